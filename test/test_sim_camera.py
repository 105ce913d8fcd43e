"""The ego camera: deterministic frames, objects where the geometry says they are."""
import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest

from spec_vlm_control.sim.camera import NO_OBJECT, EgoCamera
from spec_vlm_control.sim.scenes import SceneSampler
from spec_vlm_control.sim.world import Pose, SceneObject, World

HASH_SCRIPT = """
import hashlib
from spec_vlm_control.sim.scenes import SceneSampler
s = SceneSampler(seed=7)
h = hashlib.sha256()
for _ in range(3):
    f = s.camera.render(s.sample().world)
    h.update(f.rgb.tobytes()); h.update(f.object_index.tobytes())
print(h.hexdigest())
"""


def frames_hash(seed: int, n: int = 3) -> str:
    s = SceneSampler(seed=seed)
    h = hashlib.sha256()
    for _ in range(n):
        f = s.camera.render(s.sample().world)
        h.update(f.rgb.tobytes())
        h.update(f.object_index.tobytes())
    return h.hexdigest()


def test_frames_are_deterministic_for_a_seed_across_processes():
    here = frames_hash(7)
    assert here == frames_hash(7)
    fresh = subprocess.run([sys.executable, "-c", HASH_SCRIPT], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert fresh == here
    assert frames_hash(8) != here


def test_frame_shapes_and_types():
    cam = EgoCamera(width=96, height=80)
    f = cam.render(World(objects=(SceneObject("red", "ball", 4.0, 3.0),), pose=Pose(2.0, 3.0, 0.0)))
    assert f.rgb.shape == (80, 96, 3) and f.rgb.dtype == np.uint8
    assert f.object_index.shape == f.depth.shape == (80, 96)
    assert np.isfinite(f.depth).all() and (f.depth > 0).all()


@pytest.mark.parametrize("bearing_deg", [-30.0, -10.0, 0.0, 20.0, 35.0])
def test_object_appears_at_its_bearing(bearing_deg):
    cam = EgoCamera(width=96, height=96, supersample=1)
    b = math.radians(bearing_deg)
    ball = SceneObject("blue", "ball", 3.0 + 2.0 * math.cos(b), 3.0 + 2.0 * math.sin(b), 0.2)
    f = cam.render(World(objects=(ball,), pose=Pose(3.0, 3.0, 0.0)))
    cols = np.nonzero((f.object_index == 0).any(0))[0]
    assert len(cols) > 0
    centre_col = (cols.min() + cols.max() + 1) / 2
    assert math.degrees(cam.column_bearing(centre_col)) == pytest.approx(bearing_deg, abs=2.5)
    mask = f.object_index == 0
    colour = f.rgb[mask].mean(0)
    assert colour[2] > colour[0] + 40 and colour[2] > colour[1] + 40  # it is blue


def test_nearer_objects_look_bigger_and_hide_what_is_behind():
    cam = EgoCamera()
    near = SceneObject("red", "box", 3.0, 3.0, 0.2)
    far = SceneObject("green", "box", 4.5, 3.0, 0.2)
    f = cam.render(World(objects=(near, far), pose=Pose(1.5, 3.0, 0.0)))
    assert (f.object_index == 0).sum() > 0 and (f.object_index == 1).sum() == 0
    g = cam.render(World(objects=(far,), pose=Pose(1.5, 3.0, 0.0)))
    assert 0 < (g.object_index == 0).sum() < (f.object_index == 0).sum()
    assert f.depth[f.object_index == 0].min() == pytest.approx(1.3, abs=0.15)


def test_out_of_view_object_is_not_drawn():
    cam = EgoCamera()
    behind = SceneObject("red", "ball", 1.0, 3.0)
    f = cam.render(World(objects=(behind,), pose=Pose(3.0, 3.0, 0.0)))
    assert (f.object_index == NO_OBJECT).all()
