"""Random scenes (room, objects, obstacles, robot pose) paired with a task.

The robot is placed relative to the task's target: a chosen bearing and gap, so the
label distribution is controlled and can be put exactly on the expert's rounding grid
(`on_grid`) or anywhere between (off-grid). The target is in view and the straight way
to it is free, so the expert's direct plan is the right one.

Which tasks the scenes get is the sampler's task mix (TASK_MIXES); a trained model pair
names the mix it learnt (pair.json `task_mix`) and the demo samples its scenes from it.
A two-goal scene ("go to A then turn towards B") puts A within one walk and both objects
in view, so that the expert's first answer is turn, walk, turn, and B is still in view
when the robot, at A, decides again. A training sampler also draws, with probability
`en_route`, the states a two-goal task passes through on the way (at A, where the
memoryless expert answers only the turn towards B; beyond a walk from A, where it answers
turn and walk): the model must answer there too, though no task starts there.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from ..camera.frame import Frame
from .camera import EgoCamera
from .expert import AIM_M, after, expert_steps
from .tasks import REACH_M, Task
from .world import COLOURS, KINDS, Obstacle, Pose, SceneObject, World, wrap_angle

TASK_WEIGHTS = {"go_to": 0.5, "turn_towards": 0.35, "stop": 0.15}
FIRST_DEMO_SEED = 10_000    # training draws its scenes from SceneSampler(seed=100...) streams
WALK_M = 1.0                # a two-goal scene's A is this walk away at most (one `forward`)


@dataclass(frozen=True)
class TaskMix:
    """The tasks of a sampler's scenes. Scene i of SceneSampler(seed) sits at position
    seed + i; every `two_goal_every`-th position, counted from FIRST_DEMO_SEED, is a two-goal
    task (by construction, not by a draw, so any n demo tasks from FIRST_DEMO_SEED hold
    ceil(n / two_goal_every) of them); the others draw a one-goal task by `weights`."""
    weights: dict[str, float]
    two_goal_every: int = 0         # 0: no two-goal tasks

    def two_goal_at(self, position: int) -> bool:
        return self.two_goal_every > 0 and (position - FIRST_DEMO_SEED) % self.two_goal_every == 0


TASK_MIXES = {"one_goal": TaskMix(TASK_WEIGHTS),             # the first demo pair's
              "two_goal_third": TaskMix(TASK_WEIGHTS, 3)}    # every third task two-goal
DEFAULT_TASK_MIX = "one_goal"


def _shape(steps) -> tuple[str, ...]:
    """A plan's kinds of step: turn, forward or stop."""
    return tuple("turn" if s.verb.startswith("turn") else s.verb for s in steps)


@dataclass(frozen=True)
class Scene:
    world: World
    task: Task
    frame: Frame = field(compare=False)  # the camera's view from the start pose


@dataclass
class SceneSampler:
    seed: int = 0
    camera: EgoCamera = EgoCamera()
    objects: tuple[int, int] = (2, 4)
    obstacles: tuple[int, int] = (0, 2)
    max_gap: float = 3.0
    min_target_pixels: int = 4
    on_grid: bool = False
    angle_step: float = 10.0
    distance_step: float = 0.25
    max_forward: float | None = None   # the expert's longest walk per answer (None: no limit)
    task_mix: str = DEFAULT_TASK_MIX   # a key of TASK_MIXES
    en_route: float = 0.0   # share of two-goal scenes drawn at A or beyond a walk from it

    def __post_init__(self):
        if self.task_mix not in TASK_MIXES:
            raise ValueError(f"unknown task mix {self.task_mix!r} (known: {', '.join(TASK_MIXES)})")
        self.rng = random.Random(self.seed)
        self.drawn = 0

    def sample(self) -> Scene:
        two_goal = TASK_MIXES[self.task_mix].two_goal_at(self.seed + self.drawn)
        self.drawn += 1
        while True:
            scene = self._try(two_goal)
            if scene is not None:
                return scene

    def _try(self, two_goal: bool) -> Scene | None:
        r = self.rng
        world = World(width=r.uniform(5.0, 7.0), depth=r.uniform(5.0, 7.0))
        world.obstacles = tuple(self._obstacle(world) for _ in range(r.randint(*self.obstacles)))
        names = r.sample([(c, k) for c in COLOURS for k in KINDS], r.randint(*self.objects))
        objects = []
        for colour, kind in names:
            obj = self._place(world, colour, kind, objects)
            if obj is None:
                return None
            objects.append(obj)
        world.objects = tuple(objects)
        if two_goal:
            if r.random() < self.en_route:
                return self._en_route(world, at_first_goal=r.random() < 0.5)
            return self._two_goal(world)
        weights = TASK_MIXES[self.task_mix].weights
        verb = r.choices(list(weights), list(weights.values()))[0]
        target = r.choice(objects)
        task = Task(verb) if verb == "stop" else Task(verb, target.colour, target.kind)
        bearing, gap = self._bearing_and_gap()
        if not self._place_robot(world, target, bearing, gap, r.uniform(-math.pi, math.pi)):
            return None
        if not self._way_free(world, target):
            return None
        frame = self.camera.render(world)
        if not self._in_view(frame, world, target):
            return None
        return Scene(world, task, frame)

    def _two_goal(self, world: World) -> Scene | None:
        """Go to A then turn towards B, from a pose whose expert answer is turn, walk, turn
        and from which both are in view; B also in view (with margin) from the pose at A."""
        r, half_fov = self.rng, self._half_fov
        a, b, task = self._two_goals(world)
        walk = min(WALK_M, self.max_forward or WALK_M)
        if self.on_grid:
            k = int(half_fov // self.angle_step)
            bearing = self.angle_step * r.choice([i for i in range(-k, k + 1) if i])
            gap = AIM_M + self.distance_step * r.randint(1, int(walk // self.distance_step))
        else:
            bearing = r.uniform(-half_fov, half_fov)
            gap = r.uniform(REACH_M + 0.01, AIM_M + walk)
        if not (self._place_robot(world, a, bearing, gap, self._beyond(a, b))
                and self._way_free(world, a)):
            return None
        steps = expert_steps(world, task, self.angle_step, self.distance_step, self.max_forward)
        if _shape(steps) != ("turn", "forward", "turn"):
            return None
        turn = steps[0].value * (1 if steps[0].verb == "turn_left" else -1)
        at_a = replace(world, pose=after(world.pose, turn, steps[1].value))
        if abs(math.degrees(at_a.relative(b)[0])) > half_fov:
            return None
        frame = self.camera.render(world)
        if not (self._in_view(frame, world, a) and self._in_view(frame, world, b)
                and self._in_view(self.camera.render(at_a), at_a, b)):
            return None
        return Scene(world, task, frame)

    def _en_route(self, world: World, at_first_goal: bool) -> Scene | None:
        """A two-goal task on its way: at A facing near B (the expert turns towards B, or
        stops), or beyond a walk from A with A in view (the expert turns and walks)."""
        r, half_fov = self.rng, self._half_fov
        a, b, task = self._two_goals(world)
        away = self._beyond(a, b)
        if at_first_goal:
            if not self._place_robot(world, a, 0.0, r.uniform(0.02, REACH_M - 0.02), away):
                return None
            p = world.pose
            yaw = math.atan2(b.y - p.y, b.x - p.x) - math.radians(r.uniform(-half_fov, half_fov))
            world.pose = Pose(p.x, p.y, wrap_angle(yaw))
            seen, shapes = b, (("turn",), ("stop",))      # nothing left but facing B
        else:
            walk = min(WALK_M, self.max_forward or WALK_M)
            gap = r.uniform(AIM_M + walk + 0.25, self.max_gap)
            if not (self._place_robot(world, a, r.uniform(-half_fov, half_fov), gap, away)
                    and self._way_free(world, a)):
                return None
            seen, shapes = a, (("turn", "forward"), ("forward",))
        steps = expert_steps(world, task, self.angle_step, self.distance_step, self.max_forward)
        if _shape(steps) not in shapes:
            return None
        frame = self.camera.render(world)
        return Scene(world, task, frame) if self._in_view(frame, world, seen) else None

    @property
    def _half_fov(self) -> float:
        """Bearings (degrees either side) at which an object is drawn: in view, with margin."""
        return self.camera.hfov_deg / 2 - 5

    def _two_goals(self, world: World) -> tuple[SceneObject, SceneObject, Task]:
        """A and B drawn from the room, and "go to A then turn towards B"."""
        a, b = self.rng.sample(world.objects, 2)
        return a, b, Task("go_to", a.colour, a.kind, Task("turn_towards", b.colour, b.kind))

    def _beyond(self, a: SceneObject, b: SceneObject) -> float:
        """The side of A away from B, give or take 50 degrees (rad): approached from there,
        B lies beyond A."""
        return math.atan2(a.y - b.y, a.x - b.x) + self.rng.uniform(-0.9, 0.9)

    def _in_view(self, frame: Frame, world: World, obj: SceneObject) -> bool:
        return (frame.object_index == world.objects.index(obj)).sum() >= self.min_target_pixels

    def _obstacle(self, world: World) -> Obstacle:
        r = self.rng
        w, d = r.uniform(0.3, 1.0), r.uniform(0.3, 1.0)
        x, y = r.uniform(0, world.width - w), r.uniform(0, world.depth - d)
        return Obstacle(x, y, x + w, y + d)

    def _place(self, world, colour, kind, placed) -> SceneObject | None:
        for _ in range(50):
            rad = self.rng.uniform(0.1, 0.2)
            x, y = self.rng.uniform(0.4, world.width - 0.4), self.rng.uniform(0.4, world.depth - 0.4)
            obj = SceneObject(colour, kind, x, y, rad)
            if (world.clearance(x, y) > rad + 0.4
                    and all(o.surface_distance(x, y) > rad + 0.4 for o in placed)):
                return obj
        return None

    def _bearing_and_gap(self) -> tuple[float, float]:
        """Where a one-goal task's object is seen from the start (degrees, metres)."""
        r, half_fov = self.rng, self._half_fov
        if self.on_grid:
            k = int(half_fov // self.angle_step)
            bearing = self.angle_step * r.randint(-k, k)
            n = int((self.max_gap - AIM_M) // self.distance_step)
            return bearing, AIM_M + self.distance_step * r.randint(0, n)
        return r.uniform(-half_fov, half_fov), r.uniform(0.12, self.max_gap)

    def _place_robot(self, world: World, target: SceneObject, bearing: float, gap: float,
                     away: float) -> bool:
        """Put the robot `gap` from the target's footprint in direction `away` (rad) from
        it, turned so that it sees the target at `bearing` (degrees); False if not free."""
        ux, uy = math.cos(away), math.sin(away)
        lo, hi = 0.0, gap + 2 * target.radius + 1.0  # bisect the centre distance for this gap
        for _ in range(60):
            mid = (lo + hi) / 2
            if target.surface_distance(target.x + mid * ux, target.y + mid * uy) < gap:
                lo = mid
            else:
                hi = mid
        x, y = target.x + hi * ux, target.y + hi * uy
        yaw = wrap_angle(away + math.pi - math.radians(bearing))
        world.pose = Pose(x, y, yaw)
        return 0 < x < world.width and 0 < y < world.depth and world.is_free(x, y)

    def _way_free(self, world: World, target: SceneObject) -> bool:
        """No wall, obstacle or other object within the robot's radius along the way."""
        others = World(world.width, world.depth, tuple(o for o in world.objects if o is not target),
                       world.obstacles, robot_radius=world.robot_radius)
        x0, y0 = world.pose.x, world.pose.y
        n = 20
        return all(others.is_free(x0 + (target.x - x0) * i / n, y0 + (target.y - y0) * i / n)
                   for i in range(n + 1))
