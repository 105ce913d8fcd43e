"""Qwen2-VL's PIL image processor, plus two channels with each pixel's x and y in [-1, 1].

Qwen2-VL's vision tower has only relative (rotary) positions, so a patch cannot tell where in
the frame it is; a small tower trained from scratch learns bearings much faster when every
patch carries its own coordinates (the demo pair: `in_channels = 5`). The model stays a stock
`Qwen2VLForConditionalGeneration`; only this processor differs, and the loader picks it by
the `image_processor_type` saved beside the weights.
"""
from __future__ import annotations

import numpy as np
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


def coordinate_planes(height: int, width: int) -> np.ndarray:
    """(2, H, W): x (left -1 .. right +1), then y (top -1 .. bottom +1)."""
    xs = np.broadcast_to(np.linspace(-1, 1, width, dtype=np.float32), (height, width))
    ys = np.broadcast_to(np.linspace(-1, 1, height, dtype=np.float32)[:, None], (height, width))
    return np.stack([xs, ys])


class CoordinateImageProcessor(Qwen2VLImageProcessorPil):
    def patchify(self, image, patch_size: int, merge_size: int, temporal_patch_size: int):
        image = np.asarray(image, dtype=np.float32)
        image = np.concatenate([image, coordinate_planes(*image.shape[1:])])
        return super().patchify(image, patch_size, merge_size, temporal_patch_size)
