"""Prompts built through the chat template + PIL image processor have the official layout."""
import pytest
import torch
from transformers import Qwen2VLProcessor

from tiny_models import (
    synthetic_image, tiny_image_processor, tiny_qwen2vl_tokenizer)
from spec_vlm_control.core.prompts import Qwen2VLPrompts, TextPrompts


class OfficialQwen2VLProcessor(Qwen2VLProcessor):
    """The official processor, built without its class check: the check looks up the video
    processor class, which needs torchvision; images never touch it."""

    def check_argument_for_proper_class(self, argument_name, argument):
        return None


@pytest.fixture(scope="module")
def parts():
    tokenizer = tiny_qwen2vl_tokenizer()
    return tokenizer, tiny_image_processor()


@pytest.mark.parametrize("seed,instruction,system", [
    (0, "go to the red ball", None),
    (1, "turn towards the blue box and stop", "You control a quadruped robot."),
])
def test_image_prompt_equals_official_processor(parts, seed, instruction, system):
    tokenizer, image_processor = parts
    image = synthetic_image(seed)
    ours = Qwen2VLPrompts(tokenizer, image_processor).build(instruction, image, system=system)

    official = OfficialQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=None,
                                        chat_template=tokenizer.chat_template)
    messages = ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system
                else []) + [{"role": "user", "content": [{"type": "image"},
                                                         {"type": "text", "text": instruction}]}]
    text = official.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ref = official(text=[text], images=[image], return_tensors="pt")

    assert torch.equal(ours.input_ids, ref["input_ids"])
    assert torch.equal(ours.vision["image_grid_thw"], ref["image_grid_thw"])
    assert torch.equal(ours.vision["pixel_values"], ref["pixel_values"])

    # the layout itself: one frame of grid/merge^2 pads, right after the vision start token
    ids = ours.input_ids[0].tolist()
    start, end, pad = tokenizer.convert_tokens_to_ids(
        ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>"])
    t, h, w = ours.vision["image_grid_thw"][0].tolist()
    expected_pads = t * h * w // image_processor.merge_size ** 2
    assert ids.count(start) == ids.count(end) == 1
    assert ids[ids.index(start) + 1: ids.index(end)] == [pad] * expected_pads
    assert ours.vision["pixel_values"].shape[0] == t * h * w
    assert ours.text.endswith("<|im_start|>assistant\n")
    assert (system or "You are a helpful assistant.") in ours.text
    assert instruction in tokenizer.decode(ids)


def test_text_prompt_has_no_vision_and_uses_template(parts):
    tokenizer, image_processor = parts
    vlm_text = Qwen2VLPrompts(tokenizer, image_processor).build("stop")
    plain = TextPrompts(tokenizer).build("stop")
    assert vlm_text.vision == {} and plain.vision == {}
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert pad not in vlm_text.input_ids[0].tolist()
    assert torch.equal(vlm_text.input_ids, plain.input_ids)
    with pytest.raises(ValueError):
        TextPrompts(tokenizer).build("stop", image=synthetic_image(0))


def test_base_model_without_chat_template_gets_plain_text():
    tokenizer = tiny_qwen2vl_tokenizer()
    tokenizer.chat_template = None
    prompt = TextPrompts(tokenizer).build("go to the red ball", system="robot")
    assert prompt.text == "robot\n\ngo to the red ball"
    assert tokenizer.decode(prompt.input_ids[0]) == prompt.text
