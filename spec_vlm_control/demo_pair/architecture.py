"""Sizes of the demo pair: a Qwen2-VL target and a much cheaper Qwen2-VL draft.

Both are stock `Qwen2VLForConditionalGeneration` checkpoints (the family of the paper's Go2
pair), so the robot and the cloud load them with the same code as Qwen2-VL-2B/7B. They share
the vision tower's design and the word-level tokenizer; the draft's decoder is one layer by default
(`Recipe.draft_layers`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .vocabulary import MERGE, PATCH, TEMPORAL

IN_CHANNELS = 5   # RGB + the x/y coordinate planes (core/models/coordinate_processor.py)


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int = 256
    heads: int = 4
    vision_depth: int = 2
    vision_width: int = 128
    init_std: float = 0.06   # larger than Qwen's 0.02: a small model trained from scratch
                             # otherwise stays blind to the image for longer


TARGET = Size(layers=6)
DRAFT = Size(layers=1)


def draft_size(layers: int) -> Size:
    """The draft at a given depth. Its width stays the target's: the draft runs the target's
    pre-trained vision tower, whose merger writes tokens of exactly that width."""
    return replace(DRAFT, layers=layers, hidden=TARGET.hidden)


def config(tokenizer, size: Size):
    from transformers import Qwen2VLConfig
    head_dim = size.hidden // size.heads
    third = head_dim // 2 // 3
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=size.hidden,
                intermediate_size=2 * size.hidden, num_hidden_layers=size.layers,
                num_attention_heads=size.heads, num_key_value_heads=size.heads,
                max_position_embeddings=256, initializer_range=size.init_std,
                rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                     mrope_section=[head_dim // 2 - 2 * third, third, third]),
                bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=size.vision_depth, embed_dim=size.vision_width, hidden_size=size.hidden,
                  num_heads=4, mlp_ratio=2, in_channels=IN_CHANNELS, patch_size=PATCH,
                  spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL,
                  initializer_range=size.init_std)
    cfg = Qwen2VLConfig(text_config=text, vision_config=vision,
                        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                        vision_start_token_id=ids("<|vision_start|>"),
                        vision_end_token_id=ids("<|vision_end|>"))
    cfg.initializer_range = size.init_std
    return cfg


def build(tokenizer, size: Size, seed: int):
    import torch
    from transformers import Qwen2VLForConditionalGeneration
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config(tokenizer, size))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    return model


def describe(size: Size) -> dict:
    return asdict(size)
