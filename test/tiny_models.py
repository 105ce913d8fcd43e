"""Tiny Qwen2-VL models built in code, for tests that need a real VLM with an image input,
and the same models written to disk, so nodes load them through the real loading code
(load_model on a local folder), with the reference output they must reproduce.

The tokenizer is byte-level (256 byte tokens, no merges) plus the Qwen2-VL special tokens
and a Qwen2-VL style chat template, so any text round-trips and prompts have the official
layout. Target and draft share it; both run in float64 so that near-ties cannot flip greedy
choices between execution paths.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spec_vlm_control.core.models.base import Prompt
from spec_vlm_control.core.models.qwen2_vl import Qwen2VLAdapter
from spec_vlm_control.core.models.tokenizer import tokenizer_fingerprint

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

# The Qwen2-VL chat template's layout: default system turn, image frame inside the user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

PATCH, MERGE, TEMPORAL = 4, 2, 2
IMAGE_SIDE = 24                     # -> a 6x6 patch grid, 9 image tokens


def tiny_qwen2vl_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)


def tiny_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    return Qwen2VLImageProcessorPil(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL,
                                    min_pixels=IMAGE_SIDE ** 2, max_pixels=IMAGE_SIDE ** 2)


def tiny_qwen2vl_config(tokenizer, layers: int = 3, hidden: int = 64, heads: int = 4,
                        kv_heads: int = 2, vision_depth: int = 1, model_type: str = "qwen2_vl"):
    """A Qwen2-VL (or Qwen2.5-VL) config sized for unit tests."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig
    head_dim = hidden // heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]
    ids = tokenizer.convert_tokens_to_ids
    vision = dict(depth=vision_depth, hidden_size=hidden, num_heads=2, in_channels=3,
                  patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL)
    if model_type == "qwen2_5_vl":
        vision.update(intermediate_size=2 * hidden, out_hidden_size=hidden, window_size=16,
                      fullatt_block_indexes=[vision_depth - 1])
        config_class = Qwen2_5_VLConfig
    else:
        vision.update(embed_dim=hidden // 2, mlp_ratio=2)
        config_class = Qwen2VLConfig
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                max_position_embeddings=1024, initializer_range=0.08,
                rope_parameters=dict(rope_type="default", mrope_section=mrope, rope_theta=10000.0),
                bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"))
    return config_class(text_config=text, vision_config=vision,
                        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                        vision_start_token_id=ids("<|vision_start|>"),
                        vision_end_token_id=ids("<|vision_end|>"))


def tiny_qwen2vl_model(tokenizer, seed: int, dtype=torch.float64, **config):
    from transformers import AutoModelForImageTextToText
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(tiny_qwen2vl_config(tokenizer, **config))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(dtype).eval()


def synthetic_image(seed: int):
    """A few coloured rectangles on a grey floor: enough structure to move the logits."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    pixels = np.full((IMAGE_SIDE, IMAGE_SIDE, 3), 128, dtype=np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, IMAGE_SIDE - 6, size=2)
        h, w = rng.integers(3, 8, size=2)
        pixels[y:y + h, x:x + w] = rng.integers(0, 256, size=3)
    return Image.fromarray(pixels)


@dataclass
class TinyVLMPair:
    target: Qwen2VLAdapter
    draft: Qwen2VLAdapter
    prompt: Prompt
    tokenizer: object
    image_processor: object


def tiny_qwen2vl_pair(seed: int, instruction: str = "go to the red ball") -> TinyVLMPair:
    """A float64 target (3 layers, hidden 64) and draft (2 layers, hidden 32) sharing a
    tokenizer, with a prompt holding a synthetic image rendered through the chat template."""
    from spec_vlm_control.core.prompts import Qwen2VLPrompts
    tokenizer = tiny_qwen2vl_tokenizer()
    image_processor = tiny_image_processor()
    digest = tokenizer_fingerprint(tokenizer)
    target = Qwen2VLAdapter(tiny_qwen2vl_model(tokenizer, seed), tokenizer_hash=digest)
    draft = Qwen2VLAdapter(tiny_qwen2vl_model(tokenizer, seed + 10_000, layers=2, hidden=32,
                                              heads=2, kv_heads=1), tokenizer_hash=digest)
    prompt = Qwen2VLPrompts(tokenizer, image_processor).build(instruction, synthetic_image(seed))
    return TinyVLMPair(target, draft, prompt, tokenizer, image_processor)

INSTRUCTION = "go to the red ball"


def save_tiny_vlm(folder: Path, seed: int, silent_after: int | None = None, **config) -> Path:
    """silent_after=e: the decoder layers after layer e still compute but add nothing to the
    residual stream, so an exit head at layer e predicts exactly what the last layer decides,
    while the rest of the pass still takes time: a target whose early verdicts are right."""
    tokenizer = tiny_qwen2vl_tokenizer()
    model = tiny_qwen2vl_model(tokenizer, seed, **config)
    if silent_after is not None:
        with torch.no_grad():
            for layer in model.model.language_model.layers[silent_after + 1:]:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    tiny_image_processor().save_pretrained(folder)
    return folder


def jpeg_frame(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    synthetic_image(seed).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def reference_greedy(folder: Path, instruction: str, jpeg: bytes,
                     max_new_tokens: int) -> tuple[list[int], str]:
    """What the target alone decodes: Hugging Face generate(do_sample=False) on the prompt
    built from the same JPEG the robot sent."""
    from spec_vlm_control.core.models.loading import load_model
    loaded = load_model(str(folder), dtype="fp64")
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    prompt = loaded.prompts.build(instruction, image)
    model = loaded.adapter.model
    with torch.inference_mode():
        ids = prompt.input_ids
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             mm_token_type_ids=(ids == loaded.adapter.image_token_id).int(),
                             **prompt.vision, do_sample=False, max_new_tokens=max_new_tokens)
    new = out[0, prompt.input_ids.shape[1]:].tolist()
    return new, loaded.tokenizer.decode(new, skip_special_tokens=True)
