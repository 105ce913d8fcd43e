"""What the cloud accepts from the network, checked before anything is queued or computed.

Every field of a DecodeRequest, DraftBlock or Cancel comes from another machine. A value the
verifier cannot use (a NaN temperature, a token id outside the vocabulary, a 10,000-token
block, an image whose header declares a billion pixels) is refused here with a `BadMessage`
naming the field, the value and the limit; the cloud answers it with DecodeError BAD_REQUEST
and keeps serving. What passes cannot make the verifier raise. Limits come from CloudConfig
(the cloud node's parameters). Stamps are checked structurally only: the cloud's clock is not
the robot's.

Request-level faults (anything a message, its image or the prompt built from it can cause)
end that request; process-level faults (`is_process_fault`: out of memory, a CUDA error)
are not caught, so the node exits and its supervisor restarts it.
"""
from __future__ import annotations

import io
import math
import re
import sys
from typing import Optional

import numpy as np

from .protocol import MODE_NAMES, Cancel, DecodeRequest, DecodingParams, DraftBlock, Handshake

IMAGE_FORMATS = ("JPEG", "PNG")          # what PIL may open: two decoders, not all of them
FORMAT_WORDS = {"jpeg", "jpg", "png"}    # CompressedImage.format, e.g. "rgb8; jpeg compressed bgr8"
MIN_TEMPERATURE = 1e-6                   # logits / a tinier one can overflow float64
U32, U64 = 1 << 32, 1 << 64              # widths of the wire's unsigned fields


class BadMessage(ValueError):
    """A message, or the prompt built from it, that cannot be served: a request-level fault
    answered with DecodeError BAD_REQUEST and this reason."""


def is_process_fault(exc: BaseException) -> bool:
    """Whether an exception is the process's fault rather than a request's: memory
    exhausted or an accelerator error (the device's state is unknown afterwards)."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")      # not imported (the camera node): no torch error
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and ("CUDA" in str(exc) or "cuDNN" in str(exc))


def fault_reason(exc: Exception) -> str:
    """The reason sent back for a request-level fault, cut short."""
    text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def addressable(message) -> bool:
    """Whether an answer can name the message's sender: robot_id a string, request_id an
    unsigned 64-bit integer. A message without an address is dropped unanswered."""
    return isinstance(message, (DecodeRequest, DraftBlock, Cancel)) and \
        isinstance(message.robot_id, str) and _is_int(message.request_id) and \
        0 <= message.request_id < U64


def check_message(message, config, vocab: int, params: Optional[DecodingParams] = None) -> None:
    """BadMessage unless the cloud can serve `message`. config: the CloudConfig limits;
    vocab: the target's vocabulary size; params: the decoding parameters of the block's
    session, where there is one (whether q rows belong in the block)."""
    if isinstance(message, DecodeRequest):
        check_request(message, config)
    elif isinstance(message, DraftBlock):
        check_block(message, config, vocab, params)
    elif not isinstance(message, Cancel):
        raise BadMessage(f"unexpected message {type(message).__name__}")


def check_request(request: DecodeRequest, config) -> None:
    if not isinstance(request.params, DecodingParams):
        raise BadMessage("params: missing")
    if not isinstance(request.handshake, Handshake):
        raise BadMessage("handshake: missing")
    check_params(request.params, config)
    _integer("stamp_ns", request.stamp_ns, 0, U64 - 1)
    if not isinstance(request.instruction, str):
        raise BadMessage("instruction: not a string")
    if len(request.instruction) > config.max_instruction_chars:
        raise BadMessage(f"instruction of {len(request.instruction)} characters > "
                         f"max_instruction_chars {config.max_instruction_chars}")
    if not isinstance(request.image_data, (bytes, bytearray)) or \
            not isinstance(request.image_format, str):
        raise BadMessage("image: not bytes with a format string")
    if len(request.image_data) > config.max_image_bytes:
        raise BadMessage(f"image of {len(request.image_data)} bytes > max_image_bytes "
                         f"{config.max_image_bytes}")
    if request.image_format:
        if not FORMAT_WORDS & set(re.split(r"[^a-z0-9]+", request.image_format.lower())):
            raise BadMessage(f"image format {_shown(request.image_format)}: not JPEG or PNG")
        open_image(bytes(request.image_data), config.max_image_pixels).close()


def check_params(params: DecodingParams, config) -> None:
    if not _is_int(params.mode) or params.mode not in MODE_NAMES:
        raise BadMessage(f"mode {_shown(params.mode)}: unknown")
    _integer("block_size", params.block_size, 0, config.max_block_tokens, "max_block_tokens")
    _integer("max_new_tokens", params.max_new_tokens, 1, config.max_new_tokens,
             "max_new_tokens")
    _number("temperature", params.temperature, low=0.0)
    if 0.0 < params.temperature < MIN_TEMPERATURE:
        raise BadMessage(f"temperature {params.temperature!r}: 0 (greedy) or at least "
                         f"{MIN_TEMPERATURE:g}")
    _number("top_p", params.top_p, low=0.0, high=1.0, low_open=True)
    _integer("seed", params.seed, 0, U64 - 1)


def check_block(block: DraftBlock, config, vocab: int,
                params: Optional[DecodingParams] = None) -> None:
    _integer("round", block.round, 0, U32 - 1)
    _integer("assumed_length", block.assumed_length, 0, config.max_new_tokens, "max_new_tokens")
    _integer("assumed_hash", block.assumed_hash, 0, U64 - 1)
    if not isinstance(block.tokens, (list, tuple)):
        raise BadMessage("tokens: not a list")
    if len(block.tokens) > config.max_block_tokens:      # before looking at each of them
        raise BadMessage(f"block of {len(block.tokens)} tokens > max_block_tokens "
                         f"{config.max_block_tokens}")
    tokens = _ids("tokens", block.tokens, vocab)
    has_rows = len(block.support_sizes) + len(block.support_ids) + len(block.support_probs) > 0
    if params is not None and params.greedy and has_rows:
        raise BadMessage("q rows (support_*) in a greedy request")
    if params is not None and not params.greedy and len(block.support_sizes) != len(tokens):
        raise BadMessage(f"{len(block.support_sizes)} q rows for {len(tokens)} sampled tokens")
    if has_rows:
        _check_rows(block, tokens, vocab)


def _check_rows(block: DraftBlock, tokens: np.ndarray, vocab: int) -> None:
    """The sparse q rows of a sampled block: one row per token, each over ids in the
    vocabulary with finite probabilities in [0, 1], some mass in all, and mass on the token
    the edge drew from it (the edge samples its tokens from q)."""
    if len(block.support_sizes) != len(tokens):
        raise BadMessage(f"{len(block.support_sizes)} q rows for {len(tokens)} tokens")
    sizes = _integers("support_sizes", block.support_sizes, 1, vocab)
    ids = _ids("support_ids", block.support_ids, vocab)
    try:
        probs = np.asarray(block.support_probs, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise BadMessage("support_probs: not a list of numbers") from None
    total = int(sizes.sum()) if len(sizes) else 0
    if not total == len(ids) == len(probs) or probs.ndim != 1:
        raise BadMessage(f"q rows of {total} entries with {len(ids)} support_ids and "
                         f"{len(probs)} support_probs")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0.0) or np.any(probs > 1.0):
        raise BadMessage("support_probs: outside [0, 1] or not finite")
    row = np.repeat(np.arange(len(sizes)), sizes)
    if np.any(np.bincount(row, weights=probs, minlength=len(sizes)) <= 0.0):
        raise BadMessage("a q row without probability mass")
    drawn = (ids == tokens[row]) & (probs > 0.0)
    if not np.all(np.bincount(row[drawn], minlength=len(sizes)) > 0):
        raise BadMessage("a draft token its q row gives no probability")


def open_image(data: bytes, max_pixels: Optional[int] = None):
    """The image in `data` opened lazily (header read, pixels not decoded): BadMessage unless
    it is a JPEG or PNG declaring at most `max_pixels` pixels (a small file can declare
    huge dimensions, so this is checked before decoding)."""
    from PIL import Image
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:       # PIL's own bound, far above ours
        raise BadMessage(f"image declaring over {2 * Image.MAX_IMAGE_PIXELS} pixels > "
                         f"max_image_pixels {max_pixels}") from None
    except Exception as exc:       # hostile bytes make PIL raise errors of many kinds
        if is_process_fault(exc):
            raise
        raise BadMessage(f"image of {len(data)} bytes: not a JPEG or PNG") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise BadMessage(f"image of {width}x{height} pixels > max_image_pixels {max_pixels}")
    return image


def decode_image(data: bytes, max_pixels: Optional[int] = None):
    """The RGB pixels of a JPEG or PNG; BadMessage if they cannot be decoded (a truncated
    or corrupt file)."""
    image = open_image(data, max_pixels)
    try:
        return image.convert("RGB")
    except Exception as exc:
        if is_process_fault(exc):
            raise
        raise BadMessage(f"image of {len(data)} bytes: not decodable ({exc})") from None
    finally:
        image.close()


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _integer(name: str, value, low: int, high: int, limit: str = "") -> None:
    if not _is_int(value):
        raise BadMessage(f"{name} {_shown(value)}: not an integer")
    if not low <= value <= high:
        raise BadMessage(f"{name} {value}: outside [{low}, {high}]"
                         + (f" ({limit})" if limit else ""))


def _number(name: str, value, low: float, high: Optional[float] = None,
            low_open: bool = False) -> None:
    if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)) or \
            not math.isfinite(value):
        raise BadMessage(f"{name} {_shown(value)}: not a finite number")
    if value < low or (low_open and value == low) or (high is not None and value > high):
        interval = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise BadMessage(f"{name} {value!r}: outside {interval}")


def _integers(name: str, values, low: int, high: int) -> np.ndarray:
    """`values` as an integer array, each within [low, high]."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is None or array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise BadMessage(f"{name}: not a list of integers")
    if array.size:
        outside = (array < low) | (array > high)
        if outside.any():
            raise BadMessage(f"{name}: {array[outside][0]} outside [{low}, {high}]")
    return array.astype(np.int64)


def _ids(name: str, values, vocab: int) -> np.ndarray:
    """Token ids of the target's vocabulary (an id beyond it would index past the embedding)."""
    return _integers(name, values, 0, vocab - 1)


def _shown(value) -> str:
    """A value in a reason, cut short: reasons travel back and land in logs."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
