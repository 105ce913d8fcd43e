"""Carry out a plan in the simulator with an ideal timed executor.

The robot's own controller (spec_vlm_control.control) does this on the real graph; this
stand-in turns each step into a constant velocity for the exact duration, so the
simulator and the expert can be checked without it.
"""
from __future__ import annotations

import math

from ..action.grammar import Step
from .world import BodyVelocity, World

WALK_MPS = 0.5
TURN_RADPS = 1.0
_MOTION = {
    "forward": lambda v: (BodyVelocity(vx=WALK_MPS), v / WALK_MPS),
    "back": lambda v: (BodyVelocity(vx=-WALK_MPS), v / WALK_MPS),
    "left": lambda v: (BodyVelocity(vy=WALK_MPS), v / WALK_MPS),
    "right": lambda v: (BodyVelocity(vy=-WALK_MPS), v / WALK_MPS),
    "turn_left": lambda v: (BodyVelocity(vyaw=TURN_RADPS), math.radians(v) / TURN_RADPS),
    "turn_right": lambda v: (BodyVelocity(vyaw=-TURN_RADPS), math.radians(v) / TURN_RADPS),
}


def run_plan(world: World, steps: list[Step], rate_hz: float = 20.0) -> None:
    """Execute steps in order at `rate_hz` control ticks (the last tick of a step is shortened)."""
    for step in steps:
        if step.verb not in _MOTION:  # stop, stand, sit: the robot stays where it is
            continue
        cmd, duration = _MOTION[step.verb](step.value)
        while duration > 1e-9:
            dt = min(1.0 / rate_hz, duration)
            world.step(cmd, dt)
            duration -= dt
    world.step(BodyVelocity(), 0.0)
