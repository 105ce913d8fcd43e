"""Replay of a recorded camera topic (rosbag2, .db3 or .mcap) at its recorded pace, scaled.

Frames are due at `start + (log_time - first_log_time) / rate`. The stamp a replayed frame
carries is a choice of the caller: the recorded capture stamp (with simulated time, where
/clock replays the recorded log times, so ages stay what they were when recorded) or the
wall time of replay (without it, so a frame is as fresh as its replay and is not discarded
as decades old).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import cv2
import numpy as np
from rosbags.rosbag2 import ReaderError

from ..recording import BagMessage, bag_topics, read_bag
from .frame import Frame, FrameError, decode_image
from .source import EndOfStream, SourceError

COMPRESSED = "sensor_msgs/msg/CompressedImage"
RAW = "sensor_msgs/msg/Image"
_TO_RGB = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
           "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB}


def image_topic(path: str | Path, topic: str = "") -> str:
    """`topic` if the bag has it as an image, else the bag's only image topic."""
    try:
        topics = bag_topics(path)
    except (ReaderError, FileNotFoundError, OSError) as error:
        raise SourceError(f"bag source: cannot open {str(path)!r}: {error}") from error
    images = sorted(t for t, ty in topics.items() if ty in (COMPRESSED, RAW))
    if topic:
        if topics.get(topic) not in (COMPRESSED, RAW):
            raise SourceError(f"bag source: {path} has no image topic {topic!r} "
                              f"(image topics: {images or 'none'})")
        return topic
    if len(images) != 1:
        raise SourceError(f"bag source: {path} has {len(images)} image topics {images}; "
                          "name one with bag_topic")
    return images[0]


def frame_from_message(message: BagMessage) -> Frame:
    """A recorded CompressedImage or Image as a frame stamped with its header stamp (the
    log time if the recorder left the header empty). A damaged record is a FrameError: it
    must not end the replay."""
    try:
        msg = message.decode()
        stamp = (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec) \
            or message.stamp_ns
        if message.msgtype == COMPRESSED:
            data = bytes(msg.data)
            if "jpeg" in msg.format.lower() or "jpg" in msg.format.lower():
                return Frame(stamp, jpeg=data)
            return Frame(stamp, rgb=decode_image(data))  # png and the like
        return Frame(stamp, rgb=raw_to_rgb(msg))
    except FrameError:
        raise
    except Exception as error:
        raise FrameError(f"unusable {message.msgtype} at {message.stamp_ns}: {error}") from error


def raw_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image pixels (rows may be padded to `step`) as (H, W, 3) rgb."""
    if msg.encoding not in _TO_RGB:
        raise FrameError(f"unsupported Image encoding {msg.encoding!r}")
    channels = 1 if msg.encoding == "mono8" else 3 + msg.encoding.endswith("a8")
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
    pixels = np.ascontiguousarray(rows[:, :msg.width * channels].reshape(
        msg.height, msg.width, channels))
    code = _TO_RGB[msg.encoding]
    return pixels if code is None else cv2.cvtColor(pixels, code)


class BagReplay:
    """A bag's image topic as a frame source.

    `restamp`: stamp frames with `now_ns()` when replayed instead of their recorded stamp.
    `on_clock(log_ns)`: called with each frame's recorded log time just before the frame is
    handed out (to publish /clock). `loop`: start over at the end (recorded time jumps back).
    """

    def __init__(self, path: str | Path, now_ns: Callable[[], int], topic: str = "",
                 rate: float = 1.0, loop: bool = False, restamp: bool = True,
                 on_clock: Optional[Callable[[int], None]] = None):
        if rate <= 0:
            raise SourceError(f"bag source: rate must be positive, got {rate}")
        if not Path(path).exists():
            raise SourceError(f"bag source: no such bag {str(path)!r}")
        self.path, self.topic = Path(path), image_topic(path, topic)
        self.now_ns, self.rate, self.loop = now_ns, rate, loop
        self.restamp, self.on_clock = restamp, on_clock
        self._messages: Optional[Iterator[BagMessage]] = None
        self._origin = (0.0, 0)  # (monotonic start, first log time) of the current pass

    def next(self, stop: threading.Event) -> Optional[Frame]:
        message = self._next_message()
        wall0, log0 = self._origin
        due = wall0 + (message.stamp_ns - log0) / 1e9 / self.rate
        if stop.wait(max(0.0, due - time.monotonic())):
            return None
        if self.on_clock is not None:
            self.on_clock(message.stamp_ns)
        frame = frame_from_message(message)
        return frame.with_stamp(self.now_ns()) if self.restamp else frame

    def _next_message(self) -> BagMessage:
        message = None if self._messages is None else next(self._messages, None)
        if message is None:
            if self._messages is not None and not self.loop:
                raise EndOfStream(str(self.path))
            self._messages = read_bag(self.path, [self.topic])
            message = next(self._messages, None)
            if message is None:
                raise EndOfStream(f"{self.path} has no messages on {self.topic}")
            self._origin = (time.monotonic(), message.stamp_ns)
        return message

    def close(self) -> None:
        if self._messages is not None:
            self._messages.close()
