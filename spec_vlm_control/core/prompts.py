"""Image + instruction prompts, rendered by the model's own chat template and image processor.

A VLM only sees an image where its prompt holds the right number of image placeholder
tokens in the right frame (Qwen2-VL: `<|vision_start|>` + `<|image_pad|>` × grid/merge² +
`<|vision_end|>`). The official Qwen2-VL processor cannot be built beside this torch (its
video processor needs torchvision), so `Qwen2VLPrompts` does the one thing it adds — expand
the single placeholder that the chat template writes — with the PIL image processor.
Families whose official processor builds without torchvision go through `ProcessorPrompts`.
"""
from __future__ import annotations

from typing import Optional

import torch

from .models.base import Prompt
from .validation import decode_image


def chat_messages(instruction: str, with_image: bool, system: Optional[str] = None) -> list[dict]:
    """One user turn in the multimodal message format the chat templates expect."""
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": instruction}]
    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    return messages + [{"role": "user", "content": content}]


class TextPrompts:
    """Text-only chat prompts (Llama-family LMs, SmolLM2). A base model without a chat
    template (Llama 2 7B, the paper's target) gets the plain text after its BOS token."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def build(self, instruction: str, image=None, system: Optional[str] = None) -> Prompt:
        if image is not None:
            raise ValueError("this model takes no image")
        if self.tokenizer.chat_template is None:
            text = f"{system}\n\n{instruction}" if system else instruction
            ids = self.tokenizer(text, add_special_tokens=True, return_tensors="pt").input_ids
            return Prompt(input_ids=ids, text=text)
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": instruction})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        return Prompt(input_ids=ids, text=text)


class Qwen2VLPrompts:
    """Qwen2-VL / Qwen2.5-VL prompts with `Qwen2VLImageProcessorPil` (no torchvision)."""

    image_token = "<|image_pad|>"

    def __init__(self, tokenizer, image_processor):
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    def build(self, instruction: str, image=None, system: Optional[str] = None) -> Prompt:
        text = self.tokenizer.apply_chat_template(
            chat_messages(instruction, image is not None, system), tokenize=False,
            add_generation_prompt=True)
        vision: dict[str, torch.Tensor] = {}
        if image is not None:
            vision = dict(self.image_processor(images=[image], return_tensors="pt"))
            per_image = int(vision["image_grid_thw"][0].prod()) // self.image_processor.merge_size ** 2
            if text.count(self.image_token) != 1:
                raise ValueError(f"chat template wrote {text.count(self.image_token)} image "
                                 "placeholders for one image")
            text = text.replace(self.image_token, self.image_token * per_image)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        return Prompt(input_ids=ids, vision=vision, text=text)


class ProcessorPrompts:
    """Any family whose official processor builds here (LLaVA, Idefics3/SmolVLM)."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer

    def build(self, instruction: str, image=None, system: Optional[str] = None) -> Prompt:
        text = self.processor.apply_chat_template(
            chat_messages(instruction, image is not None, system), tokenize=False,
            add_generation_prompt=True)
        images = [image] if image is not None else None
        out = self.processor(text=[text], images=images, return_tensors="pt",
                             add_special_tokens=False)
        vision = {k: v for k, v in out.items() if k not in ("input_ids", "attention_mask")}
        return Prompt(input_ids=out["input_ids"], vision=vision, text=text)


def request_prompt(prompts, request, system: Optional[str] = None) -> Prompt:
    """The prompt of a DecodeRequest (instruction + JPEG frame, if any). The edge and the cloud
    both build it here, from the same bytes, so their prompts are identical token for token.
    An image that is not a decodable JPEG or PNG raises BadMessage (a ValueError)."""
    image = decode_image(request.image_data) if request.image_format else None
    return prompts.build(request.instruction, image, system)
