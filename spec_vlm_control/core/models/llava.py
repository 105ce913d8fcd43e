"""LLaVA (CLIP-style vision tower + projector + Llama-family decoder) as a DecoderAdapter.

The projected patch features replace the `<image>` placeholder tokens at prefill; after
that it is a plain causal LM with 1-D positions, so a sequence keeps no extra state.
"""
from __future__ import annotations

import torch

from .base import SequenceState
from .decoder import Positions, text_positions
from .vision_language import VisionLanguageAdapter


class LlavaAdapter(VisionLanguageAdapter):
    """Wraps a LlavaForConditionalGeneration."""

    def prompt_positions(self, ids: torch.Tensor, vision: dict) -> tuple[Positions, dict]:
        return text_positions(0, ids.shape[1], self.device), {}

    def step_positions(self, state: SequenceState, n: int) -> Positions:
        return text_positions(state.cache_length, n, self.device)

    def image_features(self, vision: dict) -> torch.Tensor:
        config = self.model.config
        out = self.vlm.get_image_features(
            pixel_values=vision["pixel_values"].to(self.device, self.dtype),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            image_sizes=vision.get("image_sizes"))
        return torch.cat(list(out.pooler_output))
