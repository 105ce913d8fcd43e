"""How the demo pair is trained: the phases of `train-demo`, each a plain function.

A 4.7M-parameter Qwen2-VL target trained from scratch on CPU first learns the answer
distribution and ignores the image for many minutes. What makes it look:
1. the vision tower, whose patches carry their own x/y coordinates, is pre-trained on the
   simulator's own ground truth for every image token's region (which object class covers
   it, at what bearing and how far away),
   so it encodes *what is where* before any language is learned;
2. then the tower is frozen and the language model learns the answers, reading the
   instruction before the image tokens.
The draft reuses the pre-trained tower (frozen) under a small decoder, distilled from the
finished target on its own greedy answers (distillation.py). The exit adapter is distilled from the finished target (core/exit_training).
An image-blind baseline (frames blanked) gets the same language training.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..sim.dataset import N_CLASSES, SceneSet
from .architecture import DRAFT
from .data import Batcher
from .vocabulary import IMAGE_SIDE, MERGE, PATCH

CELLS = IMAGE_SIDE // PATCH // MERGE          # image tokens per row


@dataclass(frozen=True)
class Recipe:
    seed: int = 0
    batch: int = 32
    vision_steps: int = 1500
    vision_lr: float = 2e-3
    target_steps: int = 2500
    draft_steps: int = 2000
    draft_layers: int = DRAFT.layers  # the draft's decoder depth (its width is the tower's)
    distil_top_k: int = 8             # teacher tokens cached per position (+ a rest bucket)
    distil_expert_weight: float = 0.0 # cross-entropy on the expert's answers, mixed in
    max_new_tokens: int = 12          # answer limit of the teacher's greedy answers
    lr: float = 1e-3
    warmup: int = 100
    exit_layer: int = 2               # 0-based: after the 3rd of 6 layers
    exit_scenes: int = 1500
    exit_steps: int = 600
    eval_every: int = 250             # steps between held-out checks (training curves)
    curve_scenes: int = 200

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Curve:
    """What a phase logged: rows of {step, seconds, loss, and held-out figures}."""
    name: str
    rows: list = field(default_factory=list)


def cosine_lr(base: float, step: int, steps: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / warmup)
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps))))


# -- phase 1: the vision tower on the simulator's ground truth ---------------------------------

def region_targets(scenes: SceneSet, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image token: object-class shares (+ none), bearing and gap of the object covering
    most of its region, and a mask of the regions showing any object (SceneSet.cell_targets)."""
    shares, geometry, mask = scenes.cell_targets(idx, CELLS)
    return torch.from_numpy(shares), torch.from_numpy(geometry), torch.from_numpy(mask).float()


def region_loss(readout, tokens: torch.Tensor, scenes: SceneSet, idx) -> torch.Tensor:
    shares, geometry, mask = region_targets(scenes, idx)
    out = readout(tokens).view(len(idx), CELLS * CELLS, -1)
    ce = -(shares * F.log_softmax(out[..., :N_CLASSES + 1], -1)).sum(-1).mean()
    mse = ((out[..., N_CLASSES + 1:] - geometry) ** 2).sum(-1)
    return ce + (mse * mask).sum() / mask.sum().clamp(min=1)


def pretrain_vision(model, scenes: SceneSet, recipe: Recipe, progress=None) -> Curve:
    from .data import image_grid, pixel_values
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    visual = model.model.visual
    readout = torch.nn.Linear(model.config.text_config.hidden_size, N_CLASSES + 3)
    opt = torch.optim.AdamW([*visual.parameters(), *readout.parameters()], lr=recipe.vision_lr,
                            weight_decay=0.0)
    curve, t0, ema = Curve("vision"), time.monotonic(), None
    for step in range(recipe.vision_steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(recipe.vision_lr, step, recipe.vision_steps, recipe.warmup)
        idx = rng.integers(0, len(scenes), recipe.batch)
        tokens = visual(pixel_values(scenes.images[idx]), grid_thw=image_grid(len(idx))).pooler_output
        loss = region_loss(readout, tokens, scenes, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step == 0 or (step + 1) % 50 == 0 or step + 1 == recipe.vision_steps:
            curve.rows.append({"step": step + 1, "s": round(time.monotonic() - t0, 1),
                               "loss": round(ema, 4)})
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{ema:.3f}")
    return curve


# -- phase 2: the language model on the expert's answers --------------------------------------

@torch.no_grad()
def teacher_forced_exact(model, batcher: Batcher, scenes: SceneSet, idx, blind: bool = False,
                         batch: int = 64) -> np.ndarray:
    """Per scene: whether every answer token is the model's argmax given the expert's prefix,
    i.e. whether greedy decoding reproduces the expert's answer exactly."""
    was = model.training
    model.eval()
    hits = []
    for start in range(0, len(idx), batch):
        inputs = batcher(scenes, idx[start:start + batch], blind)
        labels = inputs.pop("labels")
        logits = model(**inputs).logits
        pred, want = logits[:, :-1].argmax(-1), labels[:, 1:]
        hits += ((pred == want) | (want == -100)).all(1).tolist()
    model.train(was)
    return np.array(hits)


def language_optimiser(model, recipe: Recipe):
    """AdamW over the language model; the vision tower stays as it is (frozen)."""
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0), params


def answer_loss(model, inputs: dict) -> torch.Tensor:
    """Cross-entropy of the labelled (answer) tokens of a Batcher batch."""
    labels = inputs.pop("labels")
    logits = model(**inputs).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())


def optimise(opt, params, loss: torch.Tensor) -> None:
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def train_language(model, batcher: Batcher, scenes: SceneSet, heldout: SceneSet, steps: int,
                   recipe: Recipe, name: str, blind: bool = False, progress=None,
                   seed_offset: int = 0) -> Curve:
    """Answer cross-entropy; the vision tower stays as it is (frozen)."""
    torch.manual_seed(recipe.seed + seed_offset)
    rng = np.random.default_rng(recipe.seed + seed_offset)
    opt, params = language_optimiser(model, recipe)
    probe = np.arange(min(recipe.curve_scenes, len(heldout)))
    curve, t0, ema = Curve(name), time.monotonic(), None
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(recipe.lr, step, steps, recipe.warmup)
        loss = answer_loss(model, batcher(scenes, rng.integers(0, len(scenes), recipe.batch), blind))
        optimise(opt, params, loss)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if (step + 1) % recipe.eval_every == 0 or step + 1 == steps:
            exact = teacher_forced_exact(model, batcher, heldout, probe, blind).mean()
            curve.rows.append({"step": step + 1, "s": round(time.monotonic() - t0, 1),
                               "loss": round(ema, 4), "heldout_exact": round(float(exact), 4)})
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{ema:.3f}")
    model.eval()
    return curve


# -- phase 3: the exit adapter, distilled from the finished target ----------------------------

def train_exit(target_adapter, prompts, recipe: Recipe, new_tokens: int = 8,
               progress: Optional[Callable] = None):
    from ..core import exit_training
    features = exit_training.collect(target_adapter, prompts, [recipe.exit_layer], new_tokens)
    adapters = exit_training.train(target_adapter, features, recipe.exit_steps, seed=recipe.seed,
                                   progress=progress)
    return adapters, len(features)
