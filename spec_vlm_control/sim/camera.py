"""The robot's ego camera: a pinhole view of the room ray-cast per pixel with numpy.

Deterministic (no randomness at all: the same world and pose give the same bytes), and
it also returns what each pixel shows (object index or none) and its depth, the ground
truth that labels scenes and supervises a vision tower.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..camera.frame import Frame
from .world import COLOURS, World

WALL_HEIGHT = 1.5
OBSTACLE_HEIGHT = 1.0
_FLOOR = (np.array([150, 140, 120.0]), np.array([120, 112, 96.0]))  # checker tiles
_WALLS = np.array([[200, 200, 190], [185, 195, 200], [200, 190, 185], [190, 200, 190.0]])
_CEILING = np.array([235, 235, 240.0])
_OBSTACLE = np.array([110, 90, 70.0])
_LIGHT = np.array([0.4, 0.3, 0.86]) / np.linalg.norm([0.4, 0.3, 0.86])
NO_OBJECT = -1


@dataclass(frozen=True)
class EgoCamera:
    width: int = 64
    height: int = 64
    hfov_deg: float = 90.0
    mount_height: float = 0.3   # Go2's front camera sits about this high
    pitch_deg: float = -10.0    # looking slightly down so the floor near the robot is seen
    supersample: int = 2        # anti-aliasing: sub-pixel positions change the pixels smoothly
    tile: float = 0.5           # floor checker size, a cue for distance and motion

    def focal(self, scale: int = 1) -> float:
        return (self.width * scale / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    def column_bearing(self, u: float) -> float:
        """Bearing (rad, left positive) of a horizontal pixel coordinate at the horizon."""
        return math.atan2(self.width / 2 - u, self.focal())

    def render(self, world: World) -> Frame:
        """The view from the robot's pose with its ground truth, not stamped: a source that
        captures it stamps it (camera/simulated.py)."""
        s = self.supersample
        W, H = self.width * s, self.height * s
        f = self.focal(s)
        u = (np.arange(W) + 0.5)[None, :].repeat(H, 0)
        v = (np.arange(H) + 0.5)[:, None].repeat(W, 1)
        cam = np.stack([np.full_like(u, f), W / 2 - u, H / 2 - v], -1)  # x fwd, y left, z up
        cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
        p, yaw = math.radians(self.pitch_deg), world.pose.yaw
        cp, sp, cy, sy = math.cos(p), math.sin(p), math.cos(yaw), math.sin(yaw)
        x1 = cam[..., 0] * cp - cam[..., 2] * sp
        z = cam[..., 0] * sp + cam[..., 2] * cp
        d = np.stack([x1 * cy - cam[..., 1] * sy, x1 * sy + cam[..., 1] * cy, z], -1)
        o = np.array([world.pose.x, world.pose.y, self.mount_height])

        depth = np.full((H, W), np.inf)
        rgb = np.zeros((H, W, 3))
        index = np.full((H, W), NO_OBJECT, np.int16)

        def paint(t, colour, normal=None, obj=NO_OBJECT):
            hit = t < depth
            depth[hit] = t[hit]
            shade = 1.0 if normal is None else 0.45 + 0.55 * np.clip(normal @ _LIGHT, 0, 1)[hit, None]
            rgb[hit] = (colour[hit] if colour.ndim == 3 else colour) * shade
            index[hit] = obj

        self._room(o, d, world, paint)
        for ob in world.obstacles:
            t, n = _ray_aabb(o, d, (ob.x0, ob.y0, 0.0), (ob.x1, ob.y1, OBSTACLE_HEIGHT))
            paint(t, _OBSTACLE, n)
        for i, ob in enumerate(world.objects):
            t, n = _HIT[ob.kind](o, d, ob)
            paint(t, np.array(COLOURS[ob.colour], float), n, i)

        fog = 1.0 / (1.0 + 0.08 * np.minimum(depth, 20.0))[..., None]
        rgb = np.clip(rgb * (0.55 + 0.45 * fog), 0, 255)
        return Frame(0, rgb=_pool(rgb, s).round().astype(np.uint8),
                     object_index=_mode(index, s, len(world.objects)),
                     depth=_pool(depth[..., None], s)[..., 0].astype(np.float32))

    def _room(self, o, d, world: World, paint) -> None:
        with np.errstate(divide="ignore", invalid="ignore"):
            t_floor = np.where(d[..., 2] < 0, -o[2] / d[..., 2], np.inf)
            t_ceil = np.where(d[..., 2] > 0, (WALL_HEIGHT - o[2]) / d[..., 2], np.inf)
            tx = np.where(d[..., 0] > 0, (world.width - o[0]) / d[..., 0], -o[0] / d[..., 0])
            ty = np.where(d[..., 1] > 0, (world.depth - o[1]) / d[..., 1], -o[1] / d[..., 1])
        t_wall = np.minimum(tx, ty)
        wall_id = np.where(tx < ty, np.where(d[..., 0] > 0, 0, 2), np.where(d[..., 1] > 0, 1, 3))
        paint(t_wall, _WALLS[wall_id])
        hit = o + np.nan_to_num(t_floor, posinf=0.0)[..., None] * d
        checker = (np.floor(hit[..., 0] / self.tile) + np.floor(hit[..., 1] / self.tile)) % 2
        paint(t_floor, np.where(checker[..., None] == 0, _FLOOR[0], _FLOOR[1]))
        paint(t_ceil, _CEILING)


def _ray_aabb(o, d, lo, hi):
    """Entry distance and face normal of rays into an axis-aligned block (inf on a miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = (np.array(lo) - o) / d
        t1 = (np.array(hi) - o) / d
    near = np.nan_to_num(np.minimum(t0, t1), nan=-np.inf)
    far = np.nan_to_num(np.maximum(t0, t1), nan=np.inf)
    t_in, axis = near.max(-1), near.argmax(-1)
    t = np.where((t_in <= far.min(-1)) & (t_in > 0), t_in, np.inf)
    normal = np.zeros_like(d)
    np.put_along_axis(normal, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
    return t, normal


def _hit_box(o, d, ob):
    x0, y0, x1, y1 = ob.footprint()
    return _ray_aabb(o, d, (x0, y0, 0.0), (x1, y1, ob.height))


def _hit_ball(o, d, ob):
    c = np.array([ob.x, ob.y, ob.radius])
    oc = o - c
    b = d @ oc
    disc = b * b - (oc @ oc - ob.radius ** 2)
    t = np.where(disc >= 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
    t = np.where(t > 0, t, np.inf)
    normal = (o + np.nan_to_num(t, posinf=0.0)[..., None] * d - c) / ob.radius
    return t, normal


def _hit_cone(o, d, ob):
    """Upright cone, base radius r on the floor, apex at its height h: |xy - c| = k (h - z)."""
    h, k = ob.height, ob.radius / ob.height
    px, py, pz = o[0] - ob.x, o[1] - ob.y, h - o[2]
    dx, dy, dz = d[..., 0], d[..., 1], -d[..., 2]
    a = dx * dx + dy * dy - k * k * dz * dz
    b = 2 * (px * dx + py * dy - k * k * pz * dz)
    c = px * px + py * py - k * k * pz * pz
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = np.stack([(-b - np.sqrt(disc)) / (2 * a), (-b + np.sqrt(disc)) / (2 * a)], -1)
    zs = o[2] + roots * d[..., 2:3]
    ok = (disc[..., None] >= 0) & (roots > 0) & (zs >= 0) & (zs <= h)
    t = np.where(ok, roots, np.inf).min(-1)
    hit = o + np.nan_to_num(t, posinf=0.0)[..., None] * d
    radial = hit[..., :2] - np.array([ob.x, ob.y])
    radial /= np.maximum(np.linalg.norm(radial, axis=-1, keepdims=True), 1e-9)
    normal = np.concatenate([radial, np.full(t.shape + (1,), k)], -1) / math.sqrt(1 + k * k)
    return t, normal


_HIT = {"box": _hit_box, "ball": _hit_ball, "cone": _hit_cone}


def _pool(a: np.ndarray, s: int) -> np.ndarray:
    H, W, C = a.shape
    return a.reshape(H // s, s, W // s, s, C).mean((1, 3))


def _mode(index: np.ndarray, s: int, n: int) -> np.ndarray:
    """Per output pixel, the object seen by most of its sub-samples (NO_OBJECT on ties with none)."""
    H, W = index.shape
    blocks = index.reshape(H // s, s, W // s, s)
    counts = np.stack([(blocks == k).sum((1, 3)) for k in range(-1, n)], -1)
    return (counts.argmax(-1) - 1).astype(np.int16)
