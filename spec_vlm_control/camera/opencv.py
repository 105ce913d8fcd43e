"""Any OpenCV capture: a device index ("0"), a video file, or a stream URL (rtsp://, http://)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2

from .frame import Frame, FrameError
from .source import EndOfStream, SourceError


def parse_uri(uri: str) -> int | str:
    """A bare integer is a device index; anything else a file path or URL."""
    return int(uri) if uri.strip().isdigit() else uri


class OpenCVSource:
    """Frames from cv2.VideoCapture, stamped when read. A video file ends (or starts over
    with `loop`); a device or stream that fails to deliver reports a bad frame and is tried
    again on the next tick."""

    def __init__(self, uri: str, now_ns: Callable[[], int], loop: bool = False):
        target = parse_uri(uri)
        self.is_file = isinstance(target, str) and "://" not in target
        if self.is_file and not Path(target).is_file():
            raise SourceError(f"opencv source: no such video file {target!r}")
        self.uri, self.now_ns, self.loop = uri, now_ns, loop
        self.capture = cv2.VideoCapture(target)
        if not self.capture.isOpened():
            kind = "device" if isinstance(target, int) else "file" if self.is_file else "stream"
            raise SourceError(f"opencv source: could not open {kind} {uri!r}")

    def grab(self) -> Frame:
        stamp = self.now_ns()
        ok, bgr = self.capture.read()
        if not ok and self.is_file and self.loop:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            stamp = self.now_ns()
            ok, bgr = self.capture.read()
        if not ok or bgr is None:
            if self.is_file:
                raise EndOfStream(self.uri)
            raise FrameError(f"opencv source {self.uri!r} delivered no frame")
        return Frame(stamp, rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self.capture.release()
