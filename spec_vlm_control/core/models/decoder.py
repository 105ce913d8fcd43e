"""Running a transformers text decoder one layer at a time, the way its own forward does,
so that an exit head can look at every layer while the pass is still going. Shared by the
causal-LM and the vision-language adapters.
"""
from __future__ import annotations

from typing import Optional

import torch
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from .base import OnLayer

Positions = tuple[torch.Tensor, Optional[torch.Tensor]]   # (for the rotary embedding, for layers)


def full_cache() -> DynamicCache:
    """A cache whose every layer keeps every token, sliding-window layers included (their
    window is applied by the mask, see `layer_types`): cropping it is plain slicing, so a
    rollback is exact at any depth. transformers' own sliding layers drop what falls out of
    the window and cannot be rolled back past it."""
    return DynamicCache()


def layer_types(config, num_layers: int) -> list[str]:
    """Each layer's attention kind. Configs without `layer_types` (Mistral) slide every layer
    when `sliding_window` is set, as their model's own forward does."""
    declared = getattr(config, "layer_types", None)
    if declared:
        return list(declared)
    sliding = getattr(config, "sliding_window", None) is not None
    return ["sliding_attention" if sliding else "full_attention"] * num_layers


def run_decoder(text_model, hidden: torch.Tensor, positions: Positions, cache,
                on_layer: Optional[OnLayer] = None) -> torch.Tensor:
    """Feed embeddings `hidden` (1, n, d) through every decoder layer of `text_model`
    (embed_tokens / layers / norm / rotary_emb, as in transformers' text models), growing
    `cache`; return the last layer's output before the final norm."""
    rope_positions, layer_positions = positions
    config = text_model.config
    kwargs = dict(config=config, inputs_embeds=hidden, attention_mask=None, cache=cache,
                  position_ids=layer_positions)
    kinds = layer_types(config, len(text_model.layers))
    masks = {"full_attention": create_causal_mask(**kwargs)}      # before the cache grows
    if "sliding_attention" in kinds:
        masks["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)
    rotary = text_model.rotary_emb(hidden, rope_positions)
    for i, layer in enumerate(text_model.layers):
        hidden = layer(hidden, attention_mask=masks[kinds[i]], position_embeddings=rotary,
                       position_ids=layer_positions, cache=cache, use_cache=True)
        if on_layer is not None:
            on_layer(i, hidden[0])
    return hidden
