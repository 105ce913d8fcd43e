"""After training: the exit adapter, the held-out figures, the curves and the model card."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import evaluation as ev

TARGETS = {"exact": 0.80, "within_one_step": 0.95, "over_blind_points": 40.0,
           "acceptance": 0.60, "acceptance_stop_excluded": 0.85, "lossless": 1.0,
           "exit_agreement": 0.80, "draft_cost_ratio": 0.25}


def evaluate_and_write(plan, out: Path, work: Path, heldout, train, curves, timings: dict,
                       started: float, log=print) -> dict:
    from tqdm import tqdm
    from ..core import exit_training
    from ..core.models.loading import load_model
    from .training import train_exit
    from .pipeline import file_hashes, machine, plan_dict, write_json
    r = plan.recipe
    target = load_model(str(out / "target"), "fp32")
    draft = load_model(str(out / "draft"), "fp32")
    blind = load_model(str(work / "blind"), "fp32")
    idx = np.arange(len(heldout))
    prompts = ev.prompts_for(target, heldout, idx)

    t = time.monotonic()
    exit_prompts = ev.prompts_for(target, train, np.arange(min(r.exit_scenes, len(train))))
    with tqdm(total=r.exit_steps, desc="exit adapter") as bar:
        adapters, positions = train_exit(target.adapter, exit_prompts, r, new_tokens=12,
                                         progress=bar)
    held_features = exit_training.collect(target.adapter, prompts, [r.exit_layer], 12)
    before = exit_training.agreement(target.adapter, held_features)[r.exit_layer]
    after = exit_training.agreement(target.adapter, held_features, adapters)[r.exit_layer]
    exit_training.save(out / "target" / "exits", adapters, {
        "model": "demo pair target", "fingerprint": target.fingerprint,
        "data": f"{len(exit_prompts)} training scenes", "train_prompts": len(exit_prompts),
        "eval_prompts": len(prompts), "train_positions": positions,
        "eval_positions": len(held_features), "new_tokens": 12, "steps": r.exit_steps,
        "lr": 1e-3, "batch": 256, "seed": r.seed,
        "agreement_before": {str(r.exit_layer): before},
        "agreement_after": {str(r.exit_layer): after}})
    timings["exits_s"] = time.monotonic() - t

    t = time.monotonic()
    n = len(prompts)
    with tqdm(total=4 * n, desc="held-out evaluation") as bar:
        target_texts = ev.answers_of(target.adapter.model, target, prompts, progress=bar)
        blind_texts = ev.answers_of(blind.adapter.model, blind, prompts, blind_frames=True,
                                    progress=bar)
        draft_texts = ev.answers_of(draft.adapter.model, draft, prompts, progress=bar)
        exit_model = ev.exit_only_model(target.adapter.model, r.exit_layer, adapters[r.exit_layer])
        exit_texts = ev.answers_of(exit_model, target, prompts, progress=bar)
    pair = measure_pair(target, draft, heldout, plan, r.exit_layer, adapters, prompts=prompts)
    timings["evaluation_s"] = time.monotonic() - t
    grids = {"all": idx, "off-grid": idx[:plan.heldout_off_grid.n],
             "on-grid": idx[plan.heldout_off_grid.n:]}
    tasks = np.array(ev.task_types(heldout.instructions))

    def scored(texts):
        a = ev.score(texts, heldout, idx)
        res = {}
        for name, sel in grids.items():
            res[name] = {"exact": float(a.exact[sel].mean()), "within_one_step": float(a.near[sel].mean())}
        for task in dict.fromkeys(tasks):
            res[f"task {task}"] = {"exact": float(a.exact[tasks == task].mean()),
                                   "within_one_step": float(a.near[tasks == task].mean())}
        return res

    metrics = {
        "heldout_scenes": {"off_grid": plan.heldout_off_grid.n, "on_grid": plan.heldout_on_grid.n},
        "target": scored(target_texts), "blind_baseline": scored(blind_texts),
        "draft": scored(draft_texts), "exit_only": scored(exit_texts),
        **pair,
        "exit_layer": r.exit_layer, "exit_agreement": after, "exit_agreement_untrained": before,
        "examples": [{"instruction": heldout.instructions[i], "expert": heldout.answers[i],
                      "target": target_texts[i], "draft": draft_texts[i],
                      "blind": blind_texts[i]} for i in list(range(5)) + list(range(len(idx) - 5, len(idx)))],
    }
    from .card import points_over_blind
    metrics["points_over_blind"] = points_over_blind(metrics)
    timings["total_s"] = time.monotonic() - started
    from .architecture import TARGET, describe, draft_size
    result = {"plan": plan_dict(plan), "metrics": metrics, "targets": TARGETS,
              "architecture": {"target": describe(TARGET),
                               "draft": describe(draft_size(r.draft_layers))},
              "timings_s": {k: round(v, 1) for k, v in timings.items()},
              "machine": machine(), "curves": {c.name: c.rows for c in curves},
              "sizes_mb": {name: round(sum(p.stat().st_size for p in (out / name).rglob("*")
                                           if p.is_file()) / 1e6, 2) for name in ("target", "draft")},
              "weights_sha256": {name: file_hashes(out / name) for name in ("target", "draft")}}
    write_json(out / "metrics.json", result)
    from .card import plot_curves, write_card
    plot_curves(result, out / "curves.png")
    write_card(result, out / "MODEL_CARD.md")
    log(f"wrote {out}")
    return result


def target_greedy(target, prompts, progress=None) -> list[list[int]]:
    """The target's own greedy answers (Hugging Face `generate`): the lossless reference."""
    reference = []
    for p in prompts:
        reference.append(ev.greedy(target.adapter.model, p, target.adapter.image_token_id))
        if progress is not None:
            progress.update(1)
    return reference


def measure_pair(target, draft, heldout, plan, exit_layer: int, adapters, log=None,
                 prompts=None, reference=None) -> dict:
    """The speculative figures of a loaded target/draft pair on `heldout` (k = 4, greedy,
    through the engine with the exit's early verdicts): acceptance overall, without `stop`
    answers, per task type and block position, accepted tokens per round, target passes per
    token, losslessness against the target's own greedy output, and the cost per token."""
    from tqdm import tqdm
    prompts = prompts or ev.prompts_for(target, heldout, np.arange(len(heldout)))
    with tqdm(total=len(prompts) * (1 if reference else 2), desc="speculative decoding") as bar:
        spec = ev.speculative(target, draft, prompts, exit_layer=exit_layer,
                              exit_adapters=adapters, progress=bar)
        reference = reference or target_greedy(target, prompts, bar)
    eos = target.adapter.eos_token_ids
    same = [ev.until_eos(a, eos) == ev.until_eos(b, eos) for a, b in zip(spec["tokens"], reference)]
    answers = ev.texts_of(target, reference)
    target_cost = ev.step_cost(target.adapter, prompts[0], plan.cost_steps)
    draft_cost = ev.step_cost(draft.adapter, prompts[0], plan.cost_steps)
    speculative = ev.speculative_figures(spec, answers, list(heldout.instructions), eos)
    overall = speculative["all"]
    figures = {
        "draft_layers": draft.adapter.num_layers, "acceptance_k4": overall["acceptance"],
        "accepted": overall["accepted"], "drafted": overall["proposed"], "speculative": speculative,
        "speculative_equals_target_greedy": float(np.mean(same)),
        "early_verdict_hit_rate": spec["early_hit_rate"],
        "step_cost_s": {"target": target_cost, "draft": draft_cost},
        "draft_cost_ratio": draft_cost / target_cost}
    if log is not None:
        s = figures["speculative"]
        log(f"draft of {figures['draft_layers']} layer(s): acceptance {s['all']['acceptance']:.1%} "
            f"(stop excluded {s['stop excluded']['acceptance']:.1%}), cost "
            f"{figures['draft_cost_ratio']:.1%}, lossless {figures['speculative_equals_target_greedy']:.1%}")
    return figures
