"""The simulated world's ego camera as a frame source (spec_vlm_control.sim renders it).

The world itself (its robot pose) is owned by whoever steps the simulation; this source
only looks at it through `world()` each time a frame is due.
"""
from __future__ import annotations

from typing import Callable, Iterator

from ..sim.camera import EgoCamera
from ..sim.world import BodyVelocity, World
from .frame import Frame


class SimSource:
    def __init__(self, world: Callable[[], World], camera: EgoCamera,
                 now_ns: Callable[[], int]):
        self.world, self.camera, self.now_ns = world, camera, now_ns

    def grab(self) -> Frame:
        stamp_ns = self.now_ns()
        return self.camera.render(self.world()).with_stamp(stamp_ns)

    def close(self) -> None:
        pass


def turning_frames(world: World, camera: EgoCamera, n: int, rate_hz: float,
                   yaw_rate: float = 0.5, start_ns: int = 0) -> Iterator[Frame]:
    """`n` ego views, `1/rate_hz` apart, while the robot turns in place: a short clip whose
    every frame differs, for recorded-camera fixtures and replay tests."""
    dt = 1.0 / rate_hz
    for i in range(n):
        yield camera.render(world).with_stamp(start_ns + round(i * dt * 1e9))
        world.step(BodyVelocity(vyaw=yaw_rate), dt)
