"""Tasks given to the robot as instructions, and when each counts as done."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .world import COLOURS, KINDS, Pose, SceneObject, World

REACH_M = 0.3          # "at" an object: robot centre within this of its footprint
FACING_DEG = 15.0      # "facing" an object: its centre within this of straight ahead
STILL_M, STILL_DEG = 0.05, 3.0  # "stop": the robot has not moved more than this

VERBS = ("go_to", "turn_towards", "stop")
THEN = "then"          # joins two goals: "go to the red ball then turn towards the blue box"
TWO_GOAL = "go_to_then_turn_towards"   # the one two-goal task type


@dataclass(frozen=True)
class Task:
    verb: str                 # one of VERBS: the first (or only) goal's
    colour: str | None = None
    kind: str | None = None
    then: "Task | None" = None  # the second goal (turn towards B), done once at the first

    @property
    def type(self) -> str:
        """The task type: the verb, or TWO_GOAL."""
        return f"{self.verb}_{THEN}_{self.then.verb}" if self.then else self.verb

    @property
    def instruction(self) -> str:
        if self.verb == "stop":
            return "stop"
        first = f"{self.verb.replace('_', ' ')} the {self.colour} {self.kind}"
        return f"{first} {THEN} {self.then.instruction}" if self.then else first

    @classmethod
    def parse(cls, text: str) -> "Task":
        words = text.strip().lower().split()
        if words.count(THEN) == 1 and words.index(THEN) == 5:
            first, then = cls._one_goal(words[:5], text), cls._one_goal(words[6:], text)
            if (first.verb, then.verb) == ("go_to", "turn_towards"):
                return cls(first.verb, first.colour, first.kind, then)
            raise ValueError(f"not an instruction: {text!r}")
        return cls._one_goal(words, text)

    @classmethod
    def _one_goal(cls, words: list[str], text: str) -> "Task":
        if words == ["stop"]:
            return cls("stop")
        if (len(words) == 5 and words[2] == "the" and words[3] in COLOURS and words[4] in KINDS
                and words[0] + "_" + words[1] in VERBS):
            return cls(words[0] + "_" + words[1], words[3], words[4])
        raise ValueError(f"not an instruction: {text!r}")

    def target(self, world: World) -> SceneObject:
        return world.find(self.colour, self.kind)


def facing(world: World, obj: SceneObject) -> bool:
    return abs(math.degrees(world.relative(obj)[0])) <= FACING_DEG


def succeeded(task: Task, world: World, start: Pose) -> bool:
    """Whether the robot, now in `world`, has done `task` it was given at pose `start`."""
    if task.verb == "stop":
        moved = math.hypot(world.pose.x - start.x, world.pose.y - start.y)
        turned = abs(math.degrees(math.atan2(math.sin(world.pose.yaw - start.yaw),
                                             math.cos(world.pose.yaw - start.yaw))))
        return moved <= STILL_M and turned <= STILL_DEG
    obj = task.target(world)
    if task.then is not None:   # at the first goal (not necessarily facing it), facing the second
        return world.relative(obj)[1] <= REACH_M and facing(world, task.then.target(world))
    if task.verb == "turn_towards":
        return facing(world, obj)
    return facing(world, obj) and world.relative(obj)[1] <= REACH_M
