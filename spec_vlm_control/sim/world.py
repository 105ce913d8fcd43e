"""A flat rectangular room with coloured objects and obstacles, and the robot in it.

Frames follow ROS conventions: x forward, y left, yaw counter-clockwise (rad) from the
room's +x axis; a velocity command (vx, vy, vyaw) is in the robot's own frame. Objects
stand on the floor: a ball or cone on a disc, a box on an axis-aligned square of the same
half-width; an obstacle is an axis-aligned block taller than the camera. The robot is a small disc that stops on contact, so
the pose is always collision-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 200),
}
KINDS = ("ball", "box", "cone")


def wrap_angle(a: float) -> float:
    """Angle in (-pi, pi]."""
    return math.atan2(math.sin(a), math.cos(a))


@dataclass(frozen=True)
class Pose:
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0


@dataclass(frozen=True)
class BodyVelocity:
    """Velocity command in the robot frame: m/s, m/s, rad/s."""
    vx: float = 0.0
    vy: float = 0.0
    vyaw: float = 0.0


@dataclass(frozen=True)
class SpeedLimits:
    """Go2-like limits (the sport mode walks at up to ~1.5 m/s forward, slower sideways)."""
    vx_forward: float = 1.5
    vx_backward: float = 1.0
    vy: float = 0.6
    vyaw: float = 2.0

    def clamp(self, cmd: BodyVelocity) -> BodyVelocity:
        return BodyVelocity(min(max(cmd.vx, -self.vx_backward), self.vx_forward),
                            min(max(cmd.vy, -self.vy), self.vy),
                            min(max(cmd.vyaw, -self.vyaw), self.vyaw))


@dataclass(frozen=True)
class SceneObject:
    colour: str
    kind: str
    x: float
    y: float
    radius: float = 0.15

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"

    @property
    def height(self) -> float:
        return {"ball": 2 * self.radius, "box": 2 * self.radius, "cone": 3 * self.radius}[self.kind]

    def surface_distance(self, x: float, y: float) -> float:
        """Distance from a floor point to the object's footprint."""
        if self.kind == "box":
            return _box_distance(x, y, *self.footprint())
        return max(0.0, math.hypot(self.x - x, self.y - y) - self.radius)

    def footprint(self) -> tuple[float, float, float, float]:
        r = self.radius
        return self.x - r, self.y - r, self.x + r, self.y + r

    def ray_hit(self, x: float, y: float, c: float, s: float) -> list[float]:
        if self.kind == "box":
            return _ray_box(x, y, c, s, *self.footprint(), inside=False)
        return _ray_disc(x, y, c, s, self.x, self.y, self.radius)


@dataclass(frozen=True)
class Obstacle:
    """Axis-aligned block from (x0, y0) to (x1, y1), taller than the camera."""
    x0: float
    y0: float
    x1: float
    y1: float

    def distance(self, x: float, y: float) -> float:
        return _box_distance(x, y, self.x0, self.y0, self.x1, self.y1)


@dataclass
class World:
    width: float = 6.0
    depth: float = 6.0
    objects: tuple[SceneObject, ...] = ()
    obstacles: tuple[Obstacle, ...] = ()
    pose: Pose = field(default_factory=Pose)
    limits: SpeedLimits = field(default_factory=SpeedLimits)
    robot_radius: float = 0.1
    time: float = 0.0
    velocity: BodyVelocity = field(default_factory=BodyVelocity)   # the last command, clamped

    def clearance(self, x: float, y: float) -> float:
        """Free distance from a point to the nearest wall, obstacle or object surface."""
        walls = min(x, self.width - x, y, self.depth - y)
        blocks = min((o.distance(x, y) for o in self.obstacles), default=math.inf)
        things = min((o.surface_distance(x, y) for o in self.objects), default=math.inf)
        return min(walls, blocks, things)

    def is_free(self, x: float, y: float) -> bool:
        return self.clearance(x, y) >= self.robot_radius

    def step(self, cmd: BodyVelocity, dt: float, substeps: int = 4) -> Pose:
        """Integrate a velocity command for dt seconds; motion stops at contact."""
        cmd = self.limits.clamp(cmd)
        h = dt / substeps
        p = self.pose
        for _ in range(substeps):
            yaw = p.yaw + cmd.vyaw * h / 2  # midpoint heading
            nx = p.x + (cmd.vx * math.cos(yaw) - cmd.vy * math.sin(yaw)) * h
            ny = p.y + (cmd.vx * math.sin(yaw) + cmd.vy * math.cos(yaw)) * h
            if not self.is_free(nx, ny):
                nx, ny = p.x, p.y
            p = Pose(nx, ny, wrap_angle(p.yaw + cmd.vyaw * h))
        self.pose, self.velocity, self.time = p, cmd, self.time + dt
        return p

    def range_ahead(self, max_range: float = 5.0) -> float:
        """Distance from the robot centre to the first surface straight ahead (a range sensor)."""
        c, s = math.cos(self.pose.yaw), math.sin(self.pose.yaw)
        x, y = self.pose.x, self.pose.y
        hits = [max_range]
        for t in _ray_box(x, y, c, s, 0.0, 0.0, self.width, self.depth, inside=True):
            hits.append(t)
        for o in self.obstacles:
            hits.extend(_ray_box(x, y, c, s, o.x0, o.y0, o.x1, o.y1, inside=False))
        for o in self.objects:
            hits.extend(o.ray_hit(x, y, c, s))
        return max(0.0, min(hits))

    def relative(self, obj: SceneObject) -> tuple[float, float]:
        """(bearing of its centre in rad, left positive; distance to its footprint in m)."""
        dx, dy = obj.x - self.pose.x, obj.y - self.pose.y
        bearing = wrap_angle(math.atan2(dy, dx) - self.pose.yaw)
        return bearing, obj.surface_distance(self.pose.x, self.pose.y)

    def find(self, colour: str, kind: str) -> SceneObject:
        for o in self.objects:
            if o.colour == colour and o.kind == kind:
                return o
        raise KeyError(f"no {colour} {kind} in the room")


def _box_distance(x, y, x0, y0, x1, y1) -> float:
    return math.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1))


def _ray_box(x, y, c, s, x0, y0, x1, y1, inside: bool) -> list[float]:
    """Ray parameter where the ray enters (outside) or leaves (inside) an axis-aligned box."""
    tmin, tmax = -math.inf, math.inf
    for p, d, lo, hi in ((x, c, x0, x1), (y, s, y0, y1)):
        if abs(d) < 1e-12:
            if p < lo or p > hi:
                return []
            continue
        t0, t1 = (lo - p) / d, (hi - p) / d
        tmin, tmax = max(tmin, min(t0, t1)), min(tmax, max(t0, t1))
    if tmax < max(tmin, 0.0):
        return []
    t = tmax if inside else tmin
    return [t] if t >= 0 else []


def _ray_disc(x, y, c, s, cx, cy, r) -> list[float]:
    fx, fy = cx - x, cy - y
    along = fx * c + fy * s
    perp2 = fx * fx + fy * fy - along * along
    if along < 0 or perp2 > r * r:
        return []
    return [max(0.0, along - math.sqrt(r * r - perp2))]
