"""The model card and training curves of a `train-demo` run, from its metrics.json."""
from __future__ import annotations

from pathlib import Path

from ..sim.tasks import TWO_GOAL


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves = result["curves"]
    fig, (loss_ax, exact_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, rows) in enumerate(curves.items()):
        colour = f"C{i}"      # one colour per phase in both panels
        if rows:
            loss_ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name,
                         color=colour)
        scored = [r for r in rows if "heldout_exact" in r]
        if scored:
            exact_ax.plot([r["step"] for r in scored], [100 * r["heldout_exact"] for r in scored],
                          marker="o", ms=3, label=name, color=colour)
    loss_ax.set(xlabel="step", ylabel="training loss (EMA)", yscale="log",
                title="losses (vision: region ground truth; others: answers)")
    exact_ax.axhline(100 * result["targets"]["exact"], color="grey", ls="--", lw=0.8,
                     label="target: 80% exact")
    exact_ax.set(xlabel="step", ylabel="held-out exact match (%)", ylim=(0, 100),
                 title=f"exact match on {result['plan']['recipe']['curve_scenes']} held-out "
                       "scenes during training")
    for ax in (loss_ax, exact_ax):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _size(size: dict) -> str:
    return (f"decoder {size['layers']} × {size['hidden']} ({size['heads']} heads), vision tower "
            f"depth {size['vision_depth']} × {size['vision_width']}, init std {size['init_std']}")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def one_goal_scores(metrics: dict, key: str) -> dict:
    """Exact and within-one-step rates of `key`'s answers (target, blind_baseline, ...) over
    the held-out scenes of one-goal tasks, the tasks of the first pair, on which the
    accuracy goals hold: the per-task rates pooled by each task's scene count (the
    speculative figures count the same scenes)."""
    spec = metrics["speculative"]
    tasks = [k for k in metrics[key] if k.startswith("task ") and k != f"task {TWO_GOAL}"]
    n = {task: spec[task]["scenes"] for task in tasks}
    return {rate: sum(metrics[key][task][rate] * n[task] for task in tasks) / sum(n.values())
            for rate in ("exact", "within_one_step")}


def points_over_blind(metrics: dict) -> float:
    """The target's exact-match points above the image-blind baseline, one-goal tasks."""
    return 100 * (one_goal_scores(metrics, "target")["exact"]
                  - one_goal_scores(metrics, "blind_baseline")["exact"])


def write_card(result: dict, path: Path) -> None:
    m, t, plan = result["metrics"], result["targets"], result["plan"]
    recipe, spec = plan["recipe"], result["metrics"]["speculative"]

    tasks = sorted(k for k in m["target"] if k.startswith("task "))

    def row(name, key):
        s = m[key]
        return (f"| {name} | {_pct(s['all']['exact'])} | {_pct(s['all']['within_one_step'])} | "
                f"{_pct(s['off-grid']['exact'])} | {_pct(s['on-grid']['exact'])} | "
                + " | ".join(_pct(s[task]['exact']) for task in tasks) + " |")

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    old = {key: one_goal_scores(m, key) for key in ("target", "blind_baseline")}
    scope = " (one-goal tasks)" if f"task {TWO_GOAL}" in tasks else ""
    over_blind = points_over_blind(m)
    checks = [
        ("target exact match" + scope, _pct(old["target"]["exact"]), f"≥ {_pct(t['exact'])}",
         met(old["target"]["exact"] >= t["exact"])),
        ("target within one rounding step" + scope, _pct(old["target"]["within_one_step"]),
         f"≥ {_pct(t['within_one_step'])}",
         met(old["target"]["within_one_step"] >= t["within_one_step"])),
        ("points above the image-blind baseline" + scope, f"{over_blind:.1f}",
         f"≥ {t['over_blind_points']:.0f}", met(over_blind >= t["over_blind_points"])),
        *([("target exact / within one step (two-goal tasks)",
            f"{_pct(m['target'][f'task {TWO_GOAL}']['exact'])} / "
            f"{_pct(m['target'][f'task {TWO_GOAL}']['within_one_step'])}", "—", "reported")]
          if scope else []),
        ("draft tokens accepted (greedy, k = 4)", _pct(m["acceptance_k4"]),
         f"≥ {_pct(t['acceptance'])}", met(m["acceptance_k4"] >= t["acceptance"])),
        ("draft tokens accepted, `stop` answers excluded", _pct(spec["stop excluded"]["acceptance"]),
         f"≥ {_pct(t['acceptance_stop_excluded'])}",
         met(spec["stop excluded"]["acceptance"] >= t["acceptance_stop_excluded"])),
        ("speculative output = target greedy", _pct(m["speculative_equals_target_greedy"]),
         "100%", met(m["speculative_equals_target_greedy"] == 1.0)),
        (f"exit agreement at layer {m['exit_layer']} (0-based, of "
         f"{result['architecture']['target']['layers']})", _pct(m["exit_agreement"]),
         f"≥ {_pct(t['exit_agreement'])}", met(m["exit_agreement"] >= t["exit_agreement"])),
        ("draft cost per token / target's", _pct(m["draft_cost_ratio"]),
         f"≤ {_pct(t['draft_cost_ratio'])}", met(m["draft_cost_ratio"] <= t["draft_cost_ratio"])),
    ]
    lines = [
        "# Demo VLM pair: Qwen2-VL target and draft for the simulated Go2 world",
        "",
        "Written by `spec-vlm train-demo` (spec_vlm_control/demo_pair/). The weights in this folder",
        "are the ones this run wrote; their SHA-256 hashes are listed at the end.",
        "",
        "## What the models do",
        "Given an instruction (`go to the red ball`, `turn towards the blue box`, `stop`"
        + (", `go to the red ball then turn towards the blue box`"
           if plan["train"]["task_mix"] != "one_goal" else "") + ") and the",
        "robot's 64 × 64 ego-camera frame (JPEG, as the camera node sends it), answer in the",
        "controller's action language, e.g. `turn_left 20 ; forward 1`: the turn rounded to 10°,",
        "the walk a multiple of 0.25 m, at most 1 m per walk (the robot looks again after it).",
        f"Task mix `{plan['train']['task_mix']}` (spec_vlm_control/sim/scenes.py TASK_MIXES).",
        "",
        "## Data",
        f"- Training: {plan['train']['n']} scenes rendered by the simulator (sampler seeds from "
        f"{plan['train']['seed']}), random positions; labels by the scripted expert "
        "(spec_vlm_control/sim/expert.py)"
        + (f"; {_pct(plan['train'].get('en_route', 0))} of the two-goal ones drawn on their "
           "way (at the first goal, or beyond a walk from it)." if plan['train'].get('en_route')
           else "."),
        f"- Held out: {plan['heldout_off_grid']['n']} off-grid scenes (any position; seeds from "
        f"{plan['heldout_off_grid']['seed']}) and {plan['heldout_on_grid']['n']} on-grid scenes "
        f"(bearing and distance exactly on the expert's grid; seeds from "
        f"{plan['heldout_on_grid']['seed']}). The demo runs on other seeds again (10000 on).",
        "",
        "## Recipe",
        f"- Target: `Qwen2VLForConditionalGeneration`, {_size(result['architecture']['target'])}; "
        "8-px patches, 2 × 2 merge: 16 image tokens; 5 input channels (RGB + x/y coordinates).",
        f"- Draft: the same architecture, {_size(result['architecture']['draft'])}, sharing the "
        "word-level tokenizer; its vision tower is a copy of the target's pre-trained one (frozen).",
        f"- 1. Vision tower pre-training, {recipe['vision_steps']} steps: per image token, the "
        "share of each object class in its region, and the bearing and distance of the object "
        "covering most of it — the simulator's ground truth.",
        f"- 2. Tower frozen; language model on the expert answers, {recipe['target_steps']} steps "
        f"(target and the image-blind baseline, whose frames are blanked). AdamW lr "
        f"{recipe['lr']}, batch {recipe['batch']}, warm-up {recipe['warmup']}, cosine to 0.1×, "
        f"seed {recipe['seed']}.",
        f"- 3. Draft distilled from the finished target, {recipe['draft_steps']} steps (same "
        "optimiser): forward KL(target ‖ draft) along the target's own greedy answers to the "
        f"training scenes (on-policy), teacher-forced; soft labels cached once: the target's top "
        f"{recipe['distil_top_k']} tokens per position plus one bucket for the rest of its mass; "
        f"expert cross-entropy mixed in with weight {recipe['distil_expert_weight']}.",
        f"- 4. Exit adapter at layer {recipe['exit_layer']}: residual linear map distilled from "
        f"the last layer on the target's greedy answers to {recipe['exit_scenes']} training "
        f"scenes, {recipe['exit_steps']} steps.",
        "",
        "## Results on the held-out scenes",
        "",
        "| answers of | exact | within one step | off-grid exact | on-grid exact | "
        + " | ".join(task[len("task "):].replace("_", " ") for task in tasks) + " |",
        "|---|---|---|---|---|" + "---|" * len(tasks),
        row("target", "target"), row("image-blind baseline", "blind_baseline"),
        row("draft alone", "draft"), row(f"target's exit head alone (layer {m['exit_layer']})", "exit_only"),
        "",
        "| figure | measured | goal | |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in checks],
        "",
        "Speculative decoding (greedy, k = 4, through the engine): draft tokens accepted / "
        "proposed; per block position i, the share of blocks whose i-th draft token was "
        "accepted among those that proposed one; \"stop excluded\" leaves out the scenes whose "
        "answer is `stop`; task = the instruction's task type.",
        "",
        "| scenes | n | accepted | accepted per round | position 1 | 2 | 3 | 4 |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {g['scenes']} | {_pct(g['acceptance'])} | "
          f"{g['mean_accepted_per_round']:.2f} | "
          + " | ".join("–" if x is None else _pct(x) for x in g["by_position"]) + " |"
          for name, g in spec.items() if isinstance(g, dict)],
        "",
        f"- Target passes per committed token: {spec['target_passes_per_token']:.2f}.",
        f"- Early-verdict hit rate in speculative decoding: {_pct(m['early_verdict_hit_rate'])}; "
        f"exit agreement before distillation: {_pct(m['exit_agreement_untrained'])}.",
        f"- Step cost (one thread, median of {plan['cost_steps']} steps at a fixed cache length; "
        "a shared machine's load moves it): "
        f"target {1e3 * m['step_cost_s']['target']:.2f} ms, draft {1e3 * m['step_cost_s']['draft']:.2f} ms.",
        "- \"Within one step\": signed turn within 10° and walk within 0.25 m of the expert's.",
        "",
        "![training curves](curves.png)",
        "",
        "## Run",
        f"- Wall time: {result['timings_s']['total_s'] / 60:.1f} min "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in result['timings_s'].items() if k != 'total_s')}).",
        "- Machine: " + ", ".join(f"{k} {v}" for k, v in result["machine"].items()) + ".",
        f"- Sizes: target {result['sizes_mb']['target']} MB, draft {result['sizes_mb']['draft']} MB.",
        "",
        "## Weights (SHA-256)",
        *[f"- `{name}/{f}`: `{h}`" for name, files in result["weights_sha256"].items()
          for f, h in files.items()],
        "",
    ]
    path.write_text("\n".join(lines))
