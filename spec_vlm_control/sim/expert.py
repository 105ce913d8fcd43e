"""The scripted expert: knows the geometry and answers in the action language.

A plan is a list of action-language steps: turn first (angles rounded to the nearest
`angle_step` degrees, left positive), then walk straight (the shortest multiple of
`distance_step` that ends within AIM_M of the target's footprint, so a rounded answer
never stops short of "reached"), at most `max_forward` metres when given: a robot that
looks again after each metre needs no distance it cannot resolve from afar. An answer that
would not move the robot is `stop`.

The expert is memoryless: for "go to A then turn towards B" it answers from the pose alone.
At A (within REACH_M) the answer is the turn towards B; elsewhere it is the way to A, and,
when that walk ends at A, the turn towards B from where the robot will then stand.
"""
from __future__ import annotations

import math

from dataclasses import replace

from ..action.grammar import Step
from .tasks import REACH_M, Task
from .world import Pose, World, wrap_angle

AIM_M = REACH_M - 0.05  # margin for the <= angle_step/2 heading error after the turn


def expert_steps(world: World, task: Task, angle_step: float = 10.0,
                 distance_step: float = 0.25, max_forward: float | None = None) -> list[Step]:
    if task.verb == "stop":
        return [Step("stop")]
    grid = (angle_step, distance_step, max_forward)
    if task.then is not None and world.relative(task.target(world))[1] <= REACH_M:
        return expert_steps(world, task.then, *grid)
    turn, forward = _turn_and_walk(world, task, *grid)
    steps: list[Step] = []
    if turn:
        steps.append(Step("turn_left" if turn > 0 else "turn_right", abs(turn)))
    if forward:
        steps.append(Step("forward", forward))
    if task.then is not None:
        there = replace(world, pose=after(world.pose, turn, forward))
        if there.relative(task.target(there))[1] <= REACH_M:
            steps += [s for s in expert_steps(there, task.then, *grid) if s.verb != "stop"]
    return steps or [Step("stop")]


def _turn_and_walk(world: World, task: Task, angle_step: float, distance_step: float,
                   max_forward: float | None) -> tuple[float, float]:
    """The rounded turn (degrees, left positive) towards the task's (first) object and the
    walk (metres, 0 unless going to it) after it."""
    bearing, gap = world.relative(task.target(world))
    turn = angle_step * round(math.degrees(bearing) / angle_step)
    forward = 0.0
    if task.verb == "go_to" and gap > AIM_M:
        # 0 when the gap exceeds AIM_M by rounding error only
        forward = distance_step * math.ceil((gap - AIM_M) / distance_step - 1e-9)
        forward = min(forward, max_forward or forward)
    return turn, forward


def after(pose: Pose, turn_deg: float, forward: float) -> Pose:
    """Where a turn, then a straight walk, leave the robot (no collision)."""
    yaw = wrap_angle(pose.yaw + math.radians(turn_deg))
    return Pose(pose.x + forward * math.cos(yaw), pose.y + forward * math.sin(yaw), yaw)

