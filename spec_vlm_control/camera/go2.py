"""The Go2's front camera through unitree_sdk2py's VideoClient (service `videohub`).

Each grab is one GetImageSample request (api 1001) answered with the latest JPEG the robot
holds. The frame is stamped when the request is sent: the robot's camera runs at ~30 fps, so
the sample is at most a frame period older than that, and never newer.
"""
from __future__ import annotations

from typing import Any, Callable

from .frame import Frame, FrameError
from .source import SourceError

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


class Go2Source:
    def __init__(self, client: Any, now_ns: Callable[[], int]):
        """`client`: an initialised VideoClient (anything with GetImageSample)."""
        self.client, self.now_ns = client, now_ns

    @classmethod
    def connect(cls, interface: str, domain_id: int, timeout_s: float,
                now_ns: Callable[[], int]) -> "Go2Source":
        """Join the robot's DDS domain on `interface` and build the video client."""
        try:
            from unitree_sdk2py.core.channel import ChannelFactoryInitialize
            from unitree_sdk2py.go2.video.video_client import VideoClient
            ChannelFactoryInitialize(domain_id, interface)
            client = VideoClient()
            client.SetTimeout(timeout_s)
            client.Init()
        except Exception as error:  # an unknown interface, a missing SDK
            raise SourceError(f"go2 source: cannot join domain {domain_id} on "
                              f"{interface!r}: {error!r}") from error
        return cls(client, now_ns)

    def grab(self) -> Frame:
        stamp = self.now_ns()
        code, data = self.client.GetImageSample()
        if code != 0:
            raise FrameError(f"GetImageSample (1001) returned {code}")
        jpeg = bytes(data or b"")
        if not (jpeg.startswith(_JPEG_START) and jpeg.endswith(_JPEG_END)):
            raise FrameError(f"GetImageSample returned {len(jpeg)} bytes that are not a "
                             "complete JPEG")
        return Frame(stamp, jpeg=jpeg)

    def close(self) -> None:
        """The SDK keeps its DDS participant until the process ends; nothing to release."""
