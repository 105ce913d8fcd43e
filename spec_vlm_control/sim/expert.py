"""The scripted expert: knows the geometry and answers in the action language.

A plan is a list of action-language steps: turn first (angles rounded to the nearest
`angle_step` degrees, left positive), then walk straight (the shortest multiple of
`distance_step` that ends within AIM_M of the target's footprint, so a rounded answer
never stops short of "reached"), at most `max_forward` metres when given: a robot that
looks again after each metre needs no distance it cannot resolve from afar. An answer that
would not move the robot is `stop`.
"""
from __future__ import annotations

import math

from ..action.grammar import Step
from .tasks import REACH_M, Task
from .world import World

AIM_M = REACH_M - 0.05  # margin for the <= angle_step/2 heading error after the turn


def expert_steps(world: World, task: Task, angle_step: float = 10.0,
                 distance_step: float = 0.25, max_forward: float | None = None) -> list[Step]:
    if task.verb == "stop":
        return [Step("stop")]
    bearing, gap = world.relative(task.target(world))
    turn = angle_step * round(math.degrees(bearing) / angle_step)
    steps: list[Step] = []
    if turn:
        steps.append(Step("turn_left" if turn > 0 else "turn_right", abs(turn)))
    if task.verb == "go_to" and gap > AIM_M:
        forward = distance_step * math.ceil((gap - AIM_M) / distance_step - 1e-9)
        if forward > 0:   # 0 when the gap exceeds AIM_M by rounding error only
            steps.append(Step("forward", min(forward, max_forward or forward)))
    return steps or [Step("stop")]

