"""One camera frame as every source delivers it, and the shaping applied before publishing.

A frame keeps the bytes it arrived with (JPEG from the Go2, a recorded CompressedImage) or
the pixels (OpenCV, the simulator, a recorded raw Image) and converts only when asked, so a
JPEG that needs no resizing is published byte for byte as it was captured or recorded. A
frame the simulator renders also carries its ground truth (what each pixel shows, and how
far away), which labels scenes and supervises a vision tower.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np

from spec_vlm_control.core.validation import BadMessage
from spec_vlm_control.core.validation import decode_image as prompt_image


class FrameError(ValueError):
    """One frame could not be used (undecodable, empty); the source itself may still work."""


def frame_is_fresh(stamp_ns: int, now_ns: int, max_age_s: float,
                   max_skew_s: float = 0.0) -> bool:
    """Whether a frame captured at `stamp_ns` may still be used for a decision at `now_ns`.

    A frame stamped further ahead than `max_skew_s` (the clock skew tolerated between two
    processes of one host) is not trusted either: its age is unknown. A zero or negative
    stamp means "never stamped" (or a corrupt one) and is never fresh.
    """
    if stamp_ns <= 0:
        return False
    age_ns = now_ns - stamp_ns
    return -max_skew_s * 1e9 <= age_ns <= max_age_s * 1e9


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image that may go into a prompt, else FrameError: at most
    `max_bytes`, and what the cloud would accept of it (core/validation.py: a JPEG or PNG,
    at most `max_pixels` as its header declares them, decodable to its end)."""
    if len(data) > max_bytes:
        raise FrameError(f"image of {len(data)} bytes, more than max_image_bytes {max_bytes}")
    try:
        return prompt_image(data, max_pixels).size
    except BadMessage as error:
        raise FrameError(str(error)) from None


@dataclass(frozen=True)
class Frame:
    """`jpeg` or `rgb` (or both); `stamp_ns`: capture time in the clock of whoever reads it
    (0: not captured yet, e.g. a render before a source stamps it)."""
    stamp_ns: int
    jpeg: Optional[bytes] = None
    rgb: Optional[np.ndarray] = None           # (H, W, 3) uint8
    object_index: Optional[np.ndarray] = None  # simulator: (H, W) int16 index into the
                                               # world's objects, sim.camera.NO_OBJECT elsewhere
    depth: Optional[np.ndarray] = None         # simulator: (H, W) float32, metres along the ray

    def __post_init__(self):
        if self.jpeg is None and self.rgb is None:
            raise FrameError("a frame needs JPEG bytes or pixels")

    def pixels(self) -> np.ndarray:
        if self.rgb is not None:
            return self.rgb
        return decode_image(self.jpeg)

    def with_stamp(self, stamp_ns: int) -> "Frame":
        return replace(self, stamp_ns=stamp_ns)


def decode_image(data: bytes) -> np.ndarray:
    """JPEG (or any format cv2 reads: PNG...) to (H, W, 3) rgb."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise FrameError(f"not a decodable image ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise FrameError(f"JPEG encoding failed for an image of shape {rgb.shape}")
    return data.tobytes()


@dataclass(frozen=True)
class Shaper:
    """Output size and JPEG quality; width or height 0 keeps the source's size."""
    width: int = 0
    height: int = 0
    jpeg_quality: int = 90

    def _resize(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        size = (self.width or w, self.height or h)
        if size == (w, h):
            return rgb
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

    def shape(self, frame: Frame, want_rgb: bool) -> tuple[bytes, Optional[np.ndarray]]:
        """(JPEG bytes, pixels if `want_rgb`) at the configured size; a JPEG already at that
        size is passed through unchanged (no second lossy encoding)."""
        if frame.jpeg is not None and not (self.width or self.height):
            return frame.jpeg, frame.pixels() if want_rgb else None
        pixels = frame.pixels()
        resized = self._resize(pixels)
        jpeg = frame.jpeg if frame.jpeg is not None and resized is pixels else \
            encode_jpeg(resized, self.jpeg_quality)
        return jpeg, resized if want_rgb else None
