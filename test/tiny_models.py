"""Tiny Qwen2-VL checkpoints written to disk, so nodes load them through the real loading
code (load_model on a local folder), and the reference output they must reproduce."""
from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from spec_vlm_control.core.models.tiny_vlm import (synthetic_image, tiny_image_processor,
                                                   tiny_qwen2vl_model, tiny_qwen2vl_tokenizer)

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
