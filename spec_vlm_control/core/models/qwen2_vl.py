"""Qwen2-VL and Qwen2.5-VL as a DecoderAdapter.

The image enters once, at prefill: the vision tower's merged patch features replace the
embeddings of the `<|image_pad|>` tokens. Qwen2-VL places tokens with 3-D rotary positions
(M-RoPE): image tokens get (t, h, w) grid positions, text tokens the same index on all three
axes. After the image every text token sits at `index + rope_delta`, so the adapter
computes the delta once from the prompt (`get_rope_index`), keeps it in
`SequenceState.extra` and passes positions explicitly on every step. The model's own
`rope_deltas` attribute is shared by all sequences and goes stale between requests; it is
never used here.
"""
from __future__ import annotations

import torch

from .base import SequenceState
from .decoder import Positions
from .vision_language import VisionLanguageAdapter

ROPE_DELTA = "rope_delta"


class Qwen2VLAdapter(VisionLanguageAdapter):
    """Wraps a Qwen2VLForConditionalGeneration or Qwen2_5_VLForConditionalGeneration."""

    def prompt_positions(self, ids: torch.Tensor, vision: dict) -> tuple[Positions, dict]:
        grid = vision.get("image_grid_thw")
        if grid is None:
            n = ids.shape[1]
            return (torch.arange(n, device=self.device).view(1, 1, n).expand(3, 1, n), None), \
                {ROPE_DELTA: 0}
        token_types = (ids == self.image_token_id).int()
        positions, delta = self.vlm.get_rope_index(ids, mm_token_type_ids=token_types,
                                                   image_grid_thw=grid.to(self.device))
        return (positions, None), {ROPE_DELTA: int(delta.item())}

    def step_positions(self, state: SequenceState, n: int) -> Positions:
        start = state.cache_length + state.extra[ROPE_DELTA]
        return torch.arange(start, start + n, device=self.device).view(1, 1, n).expand(3, 1, n), None

    def image_features(self, vision: dict) -> torch.Tensor:
        grid = vision["image_grid_thw"].to(self.device)
        out = self.vlm.get_image_features(vision["pixel_values"].to(self.device), grid)
        return torch.cat(out.pooler_output)
