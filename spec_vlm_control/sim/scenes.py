"""Random scenes (room, objects, obstacles, robot pose) paired with a task.

The robot is placed relative to the task's target: a chosen bearing and gap, so the
label distribution is controlled and can be put exactly on the expert's rounding grid
(`on_grid`) or anywhere between (off-grid). The target is in view and the straight way
to it is free, so the expert's direct plan is the right one.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ..camera.frame import Frame
from .camera import EgoCamera
from .expert import AIM_M
from .tasks import Task
from .world import COLOURS, KINDS, Obstacle, Pose, SceneObject, World, wrap_angle

TASK_WEIGHTS = {"go_to": 0.5, "turn_towards": 0.35, "stop": 0.15}


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

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def sample(self) -> Scene:
        while True:
            scene = self._try()
            if scene is not None:
                return scene

    def _try(self) -> Scene | None:
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
        verb = r.choices(list(TASK_WEIGHTS), list(TASK_WEIGHTS.values()))[0]
        target = r.choice(objects)
        task = Task(verb) if verb == "stop" else Task(verb, target.colour, target.kind)
        if not self._place_robot(world, target):
            return None
        if not self._way_free(world, target):
            return None
        frame = self.camera.render(world)
        if (frame.object_index == world.objects.index(target)).sum() < self.min_target_pixels:
            return None
        return Scene(world, task, frame)

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

    def _place_robot(self, world: World, target: SceneObject) -> bool:
        """Put the robot at a sampled (bearing, gap) from the target, facing about it."""
        r, half_fov = self.rng, self.camera.hfov_deg / 2 - 5
        if self.on_grid:
            k = int(half_fov // self.angle_step)
            bearing = self.angle_step * r.randint(-k, k)
            n = int((self.max_gap - AIM_M) // self.distance_step)
            gap = AIM_M + self.distance_step * r.randint(0, n)
        else:
            bearing = r.uniform(-half_fov, half_fov)
            gap = r.uniform(0.12, self.max_gap)
        away = r.uniform(-math.pi, math.pi)
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
