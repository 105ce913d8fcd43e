"""What every frame source offers the camera node, and the loop that drives one.

A source's `next(stop)` returns the next frame when it is due, or None once `stop` is set.
Three outcomes are kept apart because the node treats them differently:
`SourceError` (the source cannot work at all: a missing file, an unopenable device) stops
the node with a clear message; `FrameError` (one bad frame) is reported and skipped;
`EndOfStream` (a video file or bag played to its end) ends the capture, the node stays up.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Protocol

from .frame import Frame, FrameError


class SourceError(RuntimeError):
    """The source cannot deliver frames at all."""


class EndOfStream(Exception):
    """A finite source (video file, bag) has no more frames."""


class Source(Protocol):
    def next(self, stop: threading.Event) -> Optional[Frame]: ...

    def close(self) -> None: ...


class Grabber(Protocol):
    """A live source: `grab()` returns the newest frame now (camera, robot, simulator)."""

    def grab(self) -> Frame: ...

    def close(self) -> None: ...


class Paced:
    """A live source sampled at a fixed rate. A late tick is not made up with a burst:
    the next one is scheduled a full period after it."""

    def __init__(self, grabber: Grabber, rate_hz: float):
        if rate_hz <= 0:
            raise SourceError(f"rate_hz must be positive, got {rate_hz}")
        self.grabber, self.period = grabber, 1.0 / rate_hz
        self._due = time.monotonic()

    def next(self, stop: threading.Event) -> Optional[Frame]:
        if stop.wait(max(0.0, self._due - time.monotonic())):
            return None
        self._due = max(self._due + self.period, time.monotonic())
        return self.grabber.grab()

    def close(self) -> None:
        self.grabber.close()


def run_capture(source: Source, deliver: Callable[[Frame], None],
                report: Callable[[FrameError], None], stop: threading.Event) -> None:
    """Hand frames to `deliver` until `stop` is set or the stream ends. A bad frame goes to
    `report` and capture goes on; a SourceError propagates."""
    while not stop.is_set():
        try:
            frame = source.next(stop)
        except FrameError as error:
            report(error)
            continue
        except EndOfStream:
            return
        if frame is not None:
            deliver(frame)
