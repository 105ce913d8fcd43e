"""How a step moves the robot: a velocity along one axis until its distance or angle is covered.

Conventions are REP 103 (x forward, y left, yaw counter-clockwise positive), so
`turn_left` is a positive yaw rate and `right` a negative y velocity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..action import Step

AXES = ("vx", "vy", "vyaw")
POSTURES = ("stand", "sit")

# verb -> (axis, sign)
_MOTIONS = {
    "forward": ("vx", 1.0),
    "back": ("vx", -1.0),
    "left": ("vy", 1.0),
    "right": ("vy", -1.0),
    "turn_left": ("vyaw", 1.0),
    "turn_right": ("vyaw", -1.0),
}


@dataclass(frozen=True)
class Command:
    """A velocity command (m/s, m/s, rad/s); `posture` asks the backend for stand/sit."""
    vx: float = 0.0
    vy: float = 0.0
    vyaw: float = 0.0
    posture: Optional[str] = None

    @property
    def moving(self) -> bool:
        return self.vx != 0.0 or self.vy != 0.0 or self.vyaw != 0.0

    def along(self, axis: str) -> float:
        return getattr(self, axis)


STOP = Command()


@dataclass(frozen=True)
class MotionLimits:
    """Cruise speeds, acceleration limits and the longest a single step may run."""
    linear_speed: float = 0.4       # m/s, forward/back
    lateral_speed: float = 0.3      # m/s, left/right
    yaw_rate: float = math.radians(60.0)  # rad/s
    linear_accel: float = 1.0       # m/s^2
    yaw_accel: float = math.radians(180.0)  # rad/s^2
    max_step_s: float = 10.0
    posture_s: float = 2.0          # how long stand/sit hold still for the posture change

    def __post_init__(self):
        for name, value in vars(self).items():
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"motion limit {name} must be finite and > 0, got {value}")


@dataclass(frozen=True)
class StepMotion:
    """A step as motion: `goal` (m or rad) covered at `speed` along `axis` (sign included)."""
    axis: Optional[str]   # None: holds still (stop, stand, sit)
    sign: float
    speed: float
    accel: float
    goal: float
    hold_s: float         # for steps that hold still: how long

    @classmethod
    def of(cls, step: Step, limits: MotionLimits) -> "StepMotion":
        if step.verb not in _MOTIONS:
            hold = limits.posture_s if step.verb in POSTURES else 0.0
            return cls(None, 0.0, 0.0, 0.0, 0.0, hold)
        axis, sign = _MOTIONS[step.verb]
        if axis == "vyaw":
            return cls(axis, sign, limits.yaw_rate, limits.yaw_accel, math.radians(step.value), 0.0)
        speed = limits.linear_speed if axis == "vx" else limits.lateral_speed
        return cls(axis, sign, speed, limits.linear_accel, step.value, 0.0)

    def planned_duration(self, max_step_s: float) -> float:
        """Time to cover the goal from rest: ramp up at `accel`, cruise, stop at once."""
        if self.axis is None:
            return self.hold_s
        ramp_distance = self.speed ** 2 / (2.0 * self.accel)
        if self.goal <= ramp_distance:
            duration = math.sqrt(2.0 * self.goal / self.accel)
        else:
            duration = self.goal / self.speed + self.speed / (2.0 * self.accel)
        return min(duration, max_step_s)


def limit_accel(previous: float, target: float, max_delta: float) -> float:
    """Next velocity on one axis: speeding up is rate-limited, slowing down never is.

    Reversing counts as stopping (at once) and then speeding up from zero.
    """
    if previous * target < 0.0:
        previous = 0.0
    if abs(target) <= abs(previous):
        return target
    return previous + max(-max_delta, min(max_delta, target - previous))
