"""One demo task, closed loop: instruct, let the plan run, look again, until the answer is
`stop` — then judge the result against the simulator's ground truth.

Pure task logic over a `Robot` (the demo's ROS driver node implements it on the live graph),
so the sequence can be read, and checked, without a graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Protocol

from .scenes import DEFAULT_TASK_MIX, FIRST_DEMO_SEED, SceneSampler
from .tasks import Task, succeeded
from .world import Pose

MAX_DECISIONS = 8


def demo_seeds(n: int, first: int = FIRST_DEMO_SEED) -> list[int]:
    return list(range(first, first + n))


@dataclass
class Decision:
    """One request of a task, as the robot saw it."""
    request_id: int
    instruction: str
    answer: str = ""
    token_ids: list[int] = field(default_factory=list)
    jpeg: bytes = b""                       # the frame the edge decided on
    stats: dict = field(default_factory=dict)   # the edge's RequestStats, field by field
    plan_status: str = ""                   # finished, rejected, preempted, or why none came
    pose_before: Optional[Pose] = None
    pose_after: Optional[Pose] = None
    started_s: float = 0.0                  # since the run began
    ended_s: float = 0.0
    replays: dict = field(default_factory=dict)  # mode -> stats of decoding it again
    frame_wait_s: float = 0.0               # until the edge held a frame of the world as it is
    baseline: dict = field(default_factory=dict)  # the live baseline beside it (edge stats)

    @property
    def says_stop(self) -> bool:
        return [s.strip() for s in self.answer.split(";") if s.strip()] == ["stop"]


@dataclass
class TaskResult:
    seed: int
    instruction: str
    start: Pose
    end: Pose
    succeeded: bool
    decisions: list[Decision]
    trajectory: list[tuple[float, float, float, float]]   # (t_s, x, y, yaw) from odometry
    task_mix: str = DEFAULT_TASK_MIX                       # the scene is demo_scene(seed, this)


class Robot(Protocol):
    def reset(self, seed: int, start: Pose) -> None:
        """Move the world to scene `seed`; return once odometry shows `start` and a camera
        frame taken after that has been published."""

    def decide(self, instruction: str) -> Decision:
        """Instruct; return once the request has ended (its statistics arrived)."""

    def execute(self, decision: Decision) -> None:
        """Wait for the controller to end the decision's plan, then for a fresh frame of the
        robot standing still; fills plan_status."""

    def pose(self) -> Pose: ...

    def trajectory(self) -> list[tuple[float, float, float, float]]:
        """Odometry since the last reset."""


def demo_scene(seed: int, task_mix: str = DEFAULT_TASK_MIX):
    """Demo task `seed`: the first scene of SceneSampler(seed) under the pair's task mix."""
    return SceneSampler(seed=seed, task_mix=task_mix).sample()


def run_task(robot: Robot, seed: int, max_decisions: int = MAX_DECISIONS,
             task_mix: str = DEFAULT_TASK_MIX) -> TaskResult:
    scene = demo_scene(seed, task_mix)
    start, instruction = scene.world.pose, scene.task.instruction
    robot.reset(seed, start)
    decisions = []
    for _ in range(max_decisions):
        decision = robot.decide(instruction)
        decision.pose_before = robot.pose()
        decisions.append(decision)
        if decision.says_stop or not decision.stats.get("ok", False):
            decision.pose_after = robot.pose()
            break
        robot.execute(decision)
        decision.pose_after = robot.pose()
    end = robot.pose()
    return TaskResult(seed, instruction, start, end, judge(scene.task, scene.world, start, end),
                      decisions, robot.trajectory(), task_mix)


def judge(task: Task, world, start: Pose, end: Pose) -> bool:
    """The task's success criterion on the scene's own world with the robot at `end`."""
    return succeeded(task, replace(world, pose=end), start)
