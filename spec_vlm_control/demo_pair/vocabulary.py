"""The demo pair's word-level tokenizer and image processor, saved beside the weights.

Every instruction and every answer the simulated tasks can produce is a sequence of known
words, so a word-level vocabulary (a few dozen tokens) replaces Qwen2-VL's 150k BPE: the
models stay small and one token is one word of the action language. The Qwen2-VL special
tokens and a chat template keep the official prompt frame, with the instruction *before* the
image so that the image tokens are read knowing what to look for.
"""
from __future__ import annotations

from ..action.grammar import SEPARATOR, VERBS, Step, format_step
from ..sim.tasks import THEN, VERBS as TASK_VERBS
from ..sim.world import COLOURS, KINDS

SPECIAL_TOKENS = ("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
PAD, EOS = "<|endoftext|>", "<|im_end|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% if message['content'] is string %}{{ message['content'] }} {% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }} "
    "{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% endif %}{% endfor %}{% endif %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>{% endif %}")

IMAGE_SIDE, PATCH, MERGE, TEMPORAL = 64, 8, 2, 2   # 64 px frames -> 4 x 4 = 16 image tokens
ANGLES_DEG = range(10, 190, 10)                    # turns the vocabulary can say
DISTANCE_STEP_M, MAX_DISTANCE_M = 0.25, 3.0


def words() -> list[str]:
    """Instruction words, then the action language: verbs, separator, values; words added
    later go at the end, so that every earlier word keeps its token id (a trained pair's
    tokenizer stays a prefix of this one)."""
    instruction = ["the"] + [w for verb in TASK_VERBS for w in verb.split("_")]
    instruction += list(COLOURS) + list(KINDS)
    values = [format_step(Step("turn_left", a)).split()[1] for a in ANGLES_DEG]
    n = round(MAX_DISTANCE_M / DISTANCE_STEP_M)
    values += [format_step(Step("forward", DISTANCE_STEP_M * i)).split()[1] for i in range(1, n + 1)]
    return list(dict.fromkeys(instruction + list(VERBS) + [SEPARATOR] + values + [THEN]))


def demo_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {t: i for i, t in enumerate(list(SPECIAL_TOKENS) + words())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   unk_token="<unk>", chat_template=CHAT_TEMPLATE)


def demo_image_processor():
    """Frames are used at their native 64 x 64 (no resize), scaled to [-1, 1], with two
    coordinate channels (core/models/coordinate_processor.py)."""
    from ..core.models.coordinate_processor import CoordinateImageProcessor
    return CoordinateImageProcessor(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL,
                                    min_pixels=IMAGE_SIDE ** 2, max_pixels=IMAGE_SIDE ** 2,
                                    image_mean=[0.5] * 3, image_std=[0.5] * 3)
