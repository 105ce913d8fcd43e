"""The step executor: runs verified steps one after another as timed velocity commands.

Driven by `tick(now)` at the control rate with an explicit clock, so it is tested
without threads or sleeps. Each step integrates the velocity it commanded and ends
when its distance/angle is covered (the last tick commands just the remainder) or
when it has run `max_step_s`. With no verified step to run, it commands zero: the
robot never continues on a step that has not been verified.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Optional

from ..action import Step
from .motion import AXES, POSTURES, STOP, Command, MotionLimits, StepMotion, limit_accel


@dataclass
class ActiveStep:
    step: Step
    motion: StepMotion
    started_at: float
    covered: float = 0.0    # metres or radians commanded so far

    def done(self, now: float, limits: MotionLimits) -> bool:
        elapsed = now - self.started_at
        if elapsed >= limits.max_step_s:
            return True
        if self.motion.axis is None:
            return elapsed >= self.motion.hold_s
        return self.covered >= self.motion.goal - 1e-9


class PlanExecutor:
    def __init__(self, limits: MotionLimits, period_s: float):
        self.limits = limits
        self.period_s = period_s
        self.queue: deque[Step] = deque()
        self.active: Optional[ActiveStep] = None
        self.velocity = STOP            # what was last commanded
        self.last_tick: Optional[float] = None
        self.started = 0                # steps started since the last clear()
        self.finished: list[tuple[Step, float]] = []  # (step, seconds it ran), drained by callers

    @property
    def idle(self) -> bool:
        return self.active is None and not self.queue

    def push(self, steps: list[Step]) -> None:
        self.queue.extend(steps)

    def clear(self) -> None:
        """Drop every step and command zero from now on (stopping is immediate)."""
        self.queue.clear()
        self.active = None
        self.velocity = STOP
        self.started = 0

    def tick(self, now: float) -> Command:
        dt = self._advance(now)
        if self.active is not None and self.active.done(now, self.limits):
            self.finished.append((self.active.step, now - self.active.started_at))
            self.active = None
        posture = None
        if self.active is None and self.queue:
            step = self.queue.popleft()
            self.active = ActiveStep(step, StepMotion.of(step, self.limits), now)
            self.started += 1
            posture = step.verb if step.verb in POSTURES else None
            # Its first command holds for a period, whenever it comes: ramp by a period.
            dt = max(dt, self.period_s)
        self.velocity = replace(self._velocity(dt), posture=posture)
        return self.velocity

    def _advance(self, now: float) -> float:
        """Credit the active step with what the previous command covered; return dt."""
        dt = self.period_s if self.last_tick is None else now - self.last_tick
        dt = max(0.0, min(dt, 2.0 * self.period_s))  # a stalled loop does not count as motion
        self.last_tick = now
        if self.active is not None and self.active.motion.axis is not None:
            self.active.covered += abs(self.velocity.along(self.active.motion.axis)) * dt
        return dt

    def _velocity(self, dt: float) -> Command:
        if self.active is None or self.active.motion.axis is None:
            return STOP
        motion = self.active.motion
        current = self.velocity.along(motion.axis)
        speed = abs(limit_accel(current, motion.sign * motion.speed, motion.accel * dt))
        remaining = motion.goal - self.active.covered
        speed = min(speed, remaining / self.period_s)
        return Command(**{axis: (motion.sign * speed if axis == motion.axis else 0.0)
                          for axis in AXES})
