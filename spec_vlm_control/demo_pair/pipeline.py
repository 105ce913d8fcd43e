"""`train-demo` end to end: scenes -> vision tower -> target, blind baseline, draft -> exit
adapter -> held-out figures -> model card. Two worker processes (one thread each) train side
by side, so the run uses both cores of a small machine and stays deterministic for a seed.

Written into `out`: target/ (with exits/), draft/, metrics.json, curves.png, MODEL_CARD.md.
Intermediate files (rendered scenes, the blind baseline) go to `work`.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .data import SceneSpec
from .training import Curve, Recipe


@dataclass(frozen=True)
class Plan:
    recipe: Recipe = Recipe()
    train: SceneSpec = SceneSpec(n=12000, seed=100)
    heldout_off_grid: SceneSpec = SceneSpec(n=300, seed=900)
    heldout_on_grid: SceneSpec = SceneSpec(n=300, seed=950, on_grid=True)
    cost_steps: int = 300


def quick_plan() -> Plan:
    """A few minutes: enough to see the losses fall, not to meet any target."""
    recipe = replace(Recipe(), vision_steps=20, target_steps=30, draft_steps=20, warmup=5,
                     exit_scenes=20, exit_steps=20, eval_every=15, curve_scenes=20)
    return Plan(recipe, SceneSpec(n=200, seed=100), SceneSpec(n=20, seed=900),
                SceneSpec(n=20, seed=950, on_grid=True), cost_steps=30)


def _save_model(model, folder: Path) -> None:
    from .vocabulary import demo_image_processor, demo_tokenizer
    model.save_pretrained(folder)
    demo_tokenizer().save_pretrained(folder)
    demo_image_processor().save_pretrained(folder)


def _scenes(work: Path):
    from ..sim.dataset import SceneSet
    return SceneSet.load(work / "train.npz"), SceneSet.load(work / "heldout.npz")


def _worker_target(plan: Plan, work: str, out: str) -> list[Curve]:
    """Vision tower pre-training, then the target's language training."""
    import torch
    from tqdm import tqdm
    from .architecture import TARGET, build
    from .data import Batcher
    from .training import pretrain_vision, train_language
    from .vocabulary import demo_tokenizer
    torch.set_num_threads(1)
    work, out = Path(work), Path(out)
    train, heldout = _scenes(work)
    tokenizer = demo_tokenizer()
    model = build(tokenizer, TARGET, plan.recipe.seed)
    r = plan.recipe
    with tqdm(total=r.vision_steps, desc="vision tower", position=0, leave=True) as bar:
        vision = pretrain_vision(model, train, r, bar)
    torch.save(model.model.visual.state_dict(), work / "vision.pt.tmp")
    (work / "vision.pt.tmp").rename(work / "vision.pt")
    batcher = Batcher(tokenizer, image_tokens=16)
    with tqdm(total=r.target_steps, desc="target", position=0, leave=True) as bar:
        target = train_language(model, batcher, train, heldout, r.target_steps, r, "target",
                                progress=bar)
    _save_model(model, out / "target")
    return [vision, target]


def _worker_baseline_and_draft(plan: Plan, work: str, out: str) -> list[Curve]:
    """The image-blind baseline (same language training, frames blanked), then the draft on
    the target's pre-trained tower."""
    import torch
    from tqdm import tqdm
    from .architecture import DRAFT, TARGET, build
    from .data import Batcher
    from .training import train_language
    from .vocabulary import demo_tokenizer
    torch.set_num_threads(1)
    work, out = Path(work), Path(out)
    train, heldout = _scenes(work)
    tokenizer = demo_tokenizer()
    batcher = Batcher(tokenizer, image_tokens=16)
    r = plan.recipe
    blind = build(tokenizer, TARGET, r.seed)
    with tqdm(total=r.target_steps, desc="blind baseline", position=1, leave=True) as bar:
        baseline = train_language(blind, batcher, train, heldout, r.target_steps, r,
                                  "blind baseline", blind=True, progress=bar)
    _save_model(blind, work / "blind")
    while not (work / "vision.pt").exists():
        time.sleep(1.0)
    draft = build(tokenizer, DRAFT, r.seed + 1)
    draft.model.visual.load_state_dict(torch.load(work / "vision.pt"))
    with tqdm(total=r.draft_steps, desc="draft", position=1, leave=True) as bar:
        drafted = train_language(draft, batcher, train, heldout, r.draft_steps, r, "draft",
                                 progress=bar, seed_offset=1)
    _save_model(draft, out / "draft")
    return [baseline, drafted]


def run(plan: Plan, out: Path, work: Path, log=print) -> dict:
    import torch
    from tqdm import tqdm
    from ..sim.dataset import SceneSet
    from .data import render
    started = time.monotonic()
    out, work = Path(out), Path(work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "vision.pt").unlink(missing_ok=True)
    timings = {}

    t = time.monotonic()
    total = plan.train.n + plan.heldout_off_grid.n + plan.heldout_on_grid.n
    with tqdm(total=total, desc="render scenes") as bar:
        train = render(plan.train, progress=bar)
        off, on = render(plan.heldout_off_grid, progress=bar), render(plan.heldout_on_grid, progress=bar)
    heldout = SceneSet.concat([off, on])
    train.save(work / "train.npz")
    heldout.save(work / "heldout.npz")
    timings["render_s"] = time.monotonic() - t

    t = time.monotonic()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        a = pool.submit(_worker_target, plan, str(work), str(out))
        b = pool.submit(_worker_baseline_and_draft, plan, str(work), str(out))
        curves = a.result() + b.result()
    timings["train_s"] = time.monotonic() - t

    torch.set_num_threads(1)
    from .report import evaluate_and_write
    metrics = evaluate_and_write(plan, out, work, heldout, train, curves, timings, started, log)
    return metrics


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in (".safetensors",)}


def machine() -> dict:
    import os
    import torch
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads_per_worker": 1, "workers": 2}


def plan_dict(plan: Plan) -> dict:
    return {"recipe": plan.recipe.as_dict(), "train": asdict(plan.train),
            "heldout_off_grid": asdict(plan.heldout_off_grid),
            "heldout_on_grid": asdict(plan.heldout_on_grid), "cost_steps": plan.cost_steps}


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
