"""Training and held-out scenes for the demo pair, as the robot's camera delivers them.

Scenes are rendered by the simulator (spec_vlm_control.sim), labelled by its expert, and
passed through the same JPEG round trip as a camera frame on the robot (cv2 encodes, PIL
decodes, as `request_prompt` does), so the models learn from the pixels they will see.
Batches are built here directly from the uint8 frames; `pixel_values` equals what the saved
Qwen2-VL image processor produces for the same frame (checked by a test).
"""
from __future__ import annotations

import io
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..core.prompts import chat_messages
from ..sim.camera import EgoCamera
from ..sim.dataset import SceneSet, render_scenes
from ..sim.scenes import DEFAULT_TASK_MIX
from .vocabulary import IMAGE_SIDE, MERGE, PATCH, TEMPORAL

CHUNK = 500   # scenes per rendering job: each job is its own sampler seed


@dataclass(frozen=True)
class SceneSpec:
    """Which scenes: `n` from sampler seeds `seed`, `seed + 1`, ... (CHUNK scenes each), with
    the tasks of `task_mix` (sim/scenes.TASK_MIXES) and `en_route` of the two-goal ones on
    their way (sim/scenes.SceneSampler)."""
    n: int
    seed: int
    on_grid: bool = False
    max_forward: float | None = 1.0
    jpeg_quality: int = 90
    task_mix: str = DEFAULT_TASK_MIX
    en_route: float = 0.0


def _render_chunk(args) -> SceneSet:
    n, seed, on_grid, max_forward, quality, task_mix, en_route = args
    torch.set_num_threads(1)
    scenes = render_scenes(n, seed, EgoCamera(width=IMAGE_SIDE, height=IMAGE_SIDE),
                           on_grid=on_grid, max_forward=max_forward, task_mix=task_mix,
                           en_route=en_route)
    scenes.images = np.stack([jpeg_round_trip(img, quality) for img in scenes.images])
    return scenes


def render(spec: SceneSpec, workers: int = 2, progress=None) -> SceneSet:
    """Render in chunks on `workers` processes; the result does not depend on `workers`."""
    jobs = [(min(CHUNK, spec.n - start), spec.seed + i, spec.on_grid, spec.max_forward,
             spec.jpeg_quality, spec.task_mix, spec.en_route)
            for i, start in enumerate(range(0, spec.n, CHUNK))]
    parts = []
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_render_chunk, jobs):
            parts.append(part)
            if progress is not None:
                progress.update(len(part))
    return SceneSet.concat(parts)


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image
    from ..camera.frame import encode_jpeg
    return np.asarray(Image.open(io.BytesIO(encode_jpeg(rgb, quality))).convert("RGB"))


def pixel_values(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> Qwen2-VL pixel_values (B * patches, 5 * T * P * P): RGB scaled to
    [-1, 1] plus the coordinate planes, in the image processor's patch order (merge windows
    row-major)."""
    from ..core.models.coordinate_processor import coordinate_planes
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    b, side, g = x.shape[0], IMAGE_SIDE, IMAGE_SIDE // PATCH
    planes = torch.from_numpy(coordinate_planes(side, side))
    x = torch.cat([x, planes[None].expand(b, 2, side, side)], 1)
    c = x.shape[1]
    x = x[:, None].expand(b, TEMPORAL, c, side, side)       # a still image, repeated in time
    x = x.reshape(b, TEMPORAL, c, g // MERGE, MERGE, PATCH, g // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(b * g * g, c * TEMPORAL * PATCH * PATCH)


def image_grid(batch: int) -> torch.Tensor:
    g = IMAGE_SIDE // PATCH
    return torch.tensor([[1, g, g]] * batch)


class Batcher:
    """Token batches of (instruction, image, answer) through the tokenizer's chat template."""

    def __init__(self, tokenizer, image_tokens: int):
        self.tokenizer = tokenizer
        self.pad = tokenizer.pad_token_id
        self.image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        self.cache: dict[str, list[int]] = {}
        self.image_tokens = image_tokens

    def prompt_ids(self, instruction: str) -> list[int]:
        if instruction not in self.cache:
            text = self.tokenizer.apply_chat_template(chat_messages(instruction, True),
                                                      tokenize=False, add_generation_prompt=True)
            text = text.replace("<|image_pad|>", "<|image_pad|>" * self.image_tokens)
            self.cache[instruction] = self.tokenizer(text, add_special_tokens=False).input_ids
        return self.cache[instruction]

    def answer_ids(self, answer: str) -> list[int]:
        return self.tokenizer(answer, add_special_tokens=False).input_ids + [self.tokenizer.eos_token_id]

    def __call__(self, scenes: SceneSet, idx, blind: bool = False) -> dict:
        """Model inputs and labels (-100 outside the answer); `blind` blanks the image."""
        images = scenes.images[np.asarray(idx)]
        return self.encode([self.prompt_ids(scenes.instructions[i]) for i in idx],
                           [self.answer_ids(scenes.answers[i]) for i in idx],
                           np.zeros_like(images) if blind else images)

    def encode(self, prompts: list[list[int]], answers: list[list[int]], images) -> dict:
        """Right-padded inputs of prompt + answer token ids (labels: the answer's)."""
        length = max(len(p) + len(a) for p, a in zip(prompts, answers))
        ids = torch.full((len(prompts), length), self.pad)
        labels = torch.full((len(prompts), length), -100)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for row, (p, a) in enumerate(zip(prompts, answers)):
            ids[row, :len(p) + len(a)] = torch.tensor(p + a)
            labels[row, len(p):len(p) + len(a)] = torch.tensor(a)
            mask[row, :len(p) + len(a)] = 1
        return dict(input_ids=ids, attention_mask=mask, labels=labels,
                    pixel_values=pixel_values(images), image_grid_thw=image_grid(len(prompts)),
                    mm_token_type_ids=(ids == self.image_token).int())
