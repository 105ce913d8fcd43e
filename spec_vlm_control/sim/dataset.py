"""Rendered scenes labelled by the expert: what the demo VLMs are trained and scored on.

Besides the image, the instruction and the expert's answer, each scene keeps the
ground truth the simulator knows (which object every pixel shows, each object's
bearing and gap), so a vision tower can be supervised on geometry directly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..action.grammar import format_plan
from .camera import EgoCamera
from .expert import expert_steps
from .scenes import SceneSampler
from .world import COLOURS, KINDS

MAX_OBJECTS = 4
N_CLASSES = len(COLOURS) * len(KINDS)  # object classes (colour, kind); class N_CLASSES = none
# per-object ground truth columns: colour id, kind id, bearing (deg), gap (m); -1 rows absent
OBJECT_FIELDS = ("colour", "kind", "bearing_deg", "gap_m")


@dataclass
class SceneSet:
    images: np.ndarray         # (N, H, W, 3) uint8
    object_index: np.ndarray   # (N, H, W) int8: index into the scene's objects or -1
    objects: np.ndarray        # (N, MAX_OBJECTS, 4) float32, OBJECT_FIELDS; colour -1 = absent
    instructions: list[str]
    answers: list[str]
    target: np.ndarray         # (N,) int8: the task's object index, -1 for "stop"

    def __len__(self) -> int:
        return len(self.answers)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, images=self.images, object_index=self.object_index,
                            objects=self.objects, target=self.target,
                            instructions=np.array(self.instructions),
                            answers=np.array(self.answers))

    def cell_targets(self, idx, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground truth for each of cells×cells image regions (row-major, the order of a
        Qwen2-VL image's merged tokens): the share of its pixels showing each object class
        (+ a last column for none), and (bearing/45°, gap/3 m) of the object covering most
        of it, with a mask of the regions that show any object.

        Supervising a vision tower with these makes it encode *which* object is *where*
        before any language is learned (see /work/notes/SIM_REPORT.md).
        """
        idx = np.asarray(idx)
        index = self.object_index[idx].astype(np.int64)
        n, h, w = index.shape
        blocks = index.reshape(n, cells, h // cells, cells, w // cells).transpose(0, 1, 3, 2, 4)
        blocks = blocks.reshape(n, cells, cells, -1)
        share = np.stack([(blocks == k).mean(-1) for k in range(MAX_OBJECTS)], -1)  # (n,c,c,K)
        table = self.objects[idx]                                                  # (n,K,4)
        present = table[..., 0] >= 0
        cls = np.where(present, table[..., 0] * len(KINDS) + table[..., 1], N_CLASSES).astype(int)
        fractions = np.zeros((n, cells, cells, N_CLASSES + 1), np.float32)
        rows = np.arange(n)[:, None, None]
        for k in range(MAX_OBJECTS):
            np.add.at(fractions, (rows, *np.indices((cells, cells))[:, None], cls[:, k, None, None]),
                      share[..., k] * present[:, k, None, None])
        fractions[..., N_CLASSES] = 1 - fractions[..., :N_CLASSES].sum(-1)
        dominant = table[rows, share.argmax(-1)]                                  # (n,c,c,4)
        geometry = np.stack([dominant[..., 2] / 45, dominant[..., 3] / 3], -1).astype(np.float32)
        mask = share.sum(-1) > 0
        return (fractions.reshape(n, cells * cells, -1), geometry.reshape(n, cells * cells, 2),
                mask.reshape(n, cells * cells))

    @classmethod
    def concat(cls, parts: list["SceneSet"]) -> "SceneSet":
        return cls(np.concatenate([p.images for p in parts]),
                   np.concatenate([p.object_index for p in parts]),
                   np.concatenate([p.objects for p in parts]),
                   [s for p in parts for s in p.instructions],
                   [s for p in parts for s in p.answers],
                   np.concatenate([p.target for p in parts]))

    @classmethod
    def load(cls, path: str | Path) -> "SceneSet":
        z = np.load(path)
        return cls(z["images"], z["object_index"], z["objects"], z["instructions"].tolist(),
                   z["answers"].tolist(), z["target"])


def render_scenes(n: int, seed: int, camera: EgoCamera = EgoCamera(), on_grid: bool = False,
                  progress: bool = False, **sampler_options) -> SceneSet:
    """n scenes from SceneSampler(seed), rendered and labelled; the same arguments give the same
    set. `sampler_options` go to the sampler, e.g. task_mix (sim/scenes.TASK_MIXES) and
    max_forward; a two-goal scene's `target` is its first goal."""
    sampler = SceneSampler(seed=seed, camera=camera, on_grid=on_grid,
                           objects=(2, MAX_OBJECTS), **sampler_options)
    images = np.zeros((n, camera.height, camera.width, 3), np.uint8)
    index = np.zeros((n, camera.height, camera.width), np.int8)
    objects = np.full((n, MAX_OBJECTS, len(OBJECT_FIELDS)), -1.0, np.float32)
    target = np.full(n, -1, np.int8)
    instructions, answers = [], []
    colours, kinds = list(COLOURS), list(KINDS)
    for i in tqdm(range(n), desc="rendering scenes", disable=not progress):
        scene = sampler.sample()
        world, task = scene.world, scene.task
        frame = scene.frame
        images[i], index[i] = frame.rgb, frame.object_index
        for j, obj in enumerate(world.objects):
            bearing, gap = world.relative(obj)
            objects[i, j] = (colours.index(obj.colour), kinds.index(obj.kind),
                             math.degrees(bearing), gap)
        if task.verb != "stop":
            target[i] = world.objects.index(task.target(world))
        instructions.append(task.instruction)
        answers.append(format_plan(expert_steps(world, task, sampler.angle_step,
                                                sampler.distance_step, sampler.max_forward)))
    return SceneSet(images, index, objects, instructions, answers, target)
