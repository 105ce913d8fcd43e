"""`spec-vlm fleet-bench`: how many robots one cloud serves, per decoding mode, with the
cloud's target passes batched across robots and with one session per pass.

N robots run closed loop (a decision, a fixed think time, the next decision) against one
CloudVerifier with real passes of the demo pair's target, in virtual time (spec_vlm_control/
fleet/: the cloud measured, one process, one thread; drafting real, charged at the draft's
measured cost; 50 ms round trip). For each variant (each speculative mode batched and one
session per pass, and batched cloud-only streaming) N doubles from 1 until the p99 decision
latency exceeds twice single-robot streaming's, then bisects: that N is its capacity.
Saturation throughput (no think time) is measured separately. Writes fleet.json, fleet.png
and fleet.md (the tables); `--quick` is a structural check of a minute or less.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

from . import count, number

QUICK = dict(decisions=4, max_robots=2, scenes=6, saturation=[2], calibration_steps=30)
TIMERS = {"cpu": time.process_time, "wall": time.perf_counter}


def configure(parser) -> None:
    parser.add_argument("--out", default="bench/fleet", help="output folder (JSON, PNG, tables)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a structural check: {QUICK['decisions']} decisions per run, at "
                             f"most {QUICK['max_robots']} robots, {QUICK['scenes']} scenes")
    parser.add_argument("--decisions", type=count(), default=200,
                        help="measured decisions per (N, variant), after one per robot")
    parser.add_argument("--max-robots", type=count(), default=128)
    parser.add_argument("--resolution", type=number(float, 0.0, 1.0), default=0.25,
                        help="bisect until the bracket is at most this x N wide (0: one robot)")
    parser.add_argument("--think-s", type=number(float, 0.0), default=1.5,
                        help="a robot's fixed think time between decisions (executing its plan)")
    parser.add_argument("--saturation", type=_robots, default=[32],
                        help="robots of the back-to-back runs (no think time), e.g. 8,32")
    parser.add_argument("--rtt-ms", type=number(float, 0.0), default=50.0)
    parser.add_argument("-k", "--block-size", type=count(), default=4)
    parser.add_argument("--batch-sessions", type=count(), default=None,
                        help="sessions per batched pass (default: the cloud's default)")
    parser.add_argument("--scenes", type=count(), default=64, help="distinct scenes")
    parser.add_argument("--seed", type=number(int, 0), default=0,
                        help="arrivals and scenes (the scene sampler's seed is 900 + seed)")
    parser.add_argument("--clock", choices=tuple(TIMERS), default="cpu",
                        help="what a cloud pass and a draft step cost: this process's CPU "
                             "time (default; other processes on a shared machine do not "
                             "stretch it) or wall time (an idle machine)")
    parser.add_argument("--models", default=None, metavar="DIR",
                        help="a demo pair folder (default: the packaged pair)")


def _robots(text: str) -> list[int]:
    import argparse
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "robot counts") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text}: robot counts are positive")
    return values


class Runs:
    """Every run of the benchmark, memoised by (variant, N, think time); the answers of each
    scene are gathered across runs for the consistency check."""

    def __init__(self, workload, args, bar):
        self.workload, self.args, self.bar = workload, args, bar
        self.closed: dict[str, dict[int, dict]] = {}
        self.saturated: dict[str, dict[int, dict]] = {}
        self.answers: dict[int, dict[tuple, list[str]]] = {}

    def summary(self, variant, robots: int, saturated: bool = False) -> dict:
        from ..fleet.simulation import simulate
        table = (self.saturated if saturated else self.closed).setdefault(variant.name, {})
        if robots not in table:
            label = f"{variant.name}, N={robots}" + (", back to back" if saturated else "")
            self.bar.set_description(label)
            run = simulate(self.workload, variant, robots, self.args.decisions,
                           0.0 if saturated else self.args.think_s, self.args.rtt_ms / 1000,
                           self.args.seed, self.args.batch_sessions, TIMERS[self.args.clock],
                           on_decision=lambda d: self.bar.update())
            table[robots] = s = run.summary()
            for d in run.decisions:
                if not d.error:
                    self.answers.setdefault(d.scene, {}).setdefault(tuple(d.tokens), []) \
                        .append(f"{variant.name} N={robots}{' b2b' if saturated else ''}")
            self.bar.write(f"{label}: p50 {1000 * s['p50_s']:.0f} ms, p99 "
                           f"{1000 * s['p99_s']:.0f} ms, busy {s['busy_fraction']:.2f}, "
                           f"{s['verified_tokens_per_s']:.1f} tokens/s"
                           + (f", {s['failed']} failed" if s["failed"] else ""))
        return table[robots]

    def consistency(self) -> dict:
        """Greedy decoding is lossless in every variant: a scene's answer must be the same
        token for token in every run and decision."""
        split = {scene: [dict(tokens=list(t), runs=sorted(set(r))) for t, r in answers.items()]
                 for scene, answers in self.answers.items() if len(answers) > 1}
        return dict(scenes=len(self.answers),
                    decisions=sum(len(r) for a in self.answers.values() for r in a.values()),
                    mismatched_scenes=split)


def machine(load_before) -> dict:
    import torch
    import transformers
    return dict(platform=platform.platform(), processor=platform.processor() or
                platform.machine(), cpus=os.cpu_count(), python=platform.python_version(),
                torch=torch.__version__, transformers=transformers.__version__, threads=1,
                load_average_before=load_before, load_average_after=os.getloadavg())


def configuration(args, workload, batched_config, one_config) -> dict:
    from ..fleet import capacity
    from ..fleet.simulation import batching_available, variants
    return dict(
        decisions_per_run=args.decisions, warm_up="one decision per robot, not measured",
        think_s=args.think_s, think="fixed (stands for executing the plan)",
        arrivals=f"first decision at a seeded offset in [0, think_s) per robot (seed "
                 f"{args.seed}), identical for every variant",
        rtt_ms=args.rtt_ms, max_robots=args.max_robots, resolution=args.resolution,
        saturation_robots=args.saturation,
        capacity_rule=f"largest N with p99 <= {capacity.LATENCY_BOUND:g} x the p99 of batched "
                      "streaming at N = 1; N doubles from 1, then bisects",
        latency="robot sends its request -> its last verified token, queueing included",
        cloud="one CloudVerifier, real target passes, MeasuredClock, one process, one thread",
        clock=f"{args.clock} time of each cloud pass and of the draft's calibration",
        batching_available=batching_available(),
        cloud_config_batched=_config_dict(batched_config),
        cloud_config_one_per_pass=_config_dict(one_config),
        variants=[dict(name=v.name, mode=v.mode, batched=v.batched) for v in variants()],
        workload=workload.describe())


def _config_dict(config) -> dict:
    return {k: v for k, v in asdict(config).items() if not k.endswith("hash")}


def main_runs(args, workload, runs: Runs) -> dict:
    from ..fleet import capacity
    from ..fleet.simulation import STREAM, Variant, variants
    reference = runs.summary(Variant(STREAM, True), 1)["p99_s"]
    bound = capacity.LATENCY_BOUND * reference
    found = {}
    for v in variants():
        found[v.name] = capacity.search(lambda n: runs.summary(v, n)["p99_s"] <= bound,
                                        args.max_robots, args.resolution)
        for n in (1, capacity.GROWTH_AT):
            if n <= args.max_robots:
                runs.summary(v, n)
    for v in variants():
        for n in args.saturation:
            runs.summary(v, n, saturated=True)
    p50 = {name: {n: s["p50_s"] for n, s in table.items()} for name, table in runs.closed.items()}
    return dict(reference=dict(variant=Variant(STREAM, True).name, robots=1, p99_s=reference,
                               bound_s=bound),
                capacity=found, goals=capacity.goals(variants(), found, p50))


def per_pass_microbenchmark(workload, repeats: int) -> dict:
    """core/batch.py's microbenchmarks on the demo target: batched against one session per
    pass, and one scene's image prefill beside 7 blocks of 5 against separate passes. A
    failure there is reported in the results (and printed) rather than losing the fleet
    runs."""
    from ..core.batch import microbenchmark, prefill_microbenchmark
    from ..core.cloud import CloudConfig
    from ..core.protocol import DecodingParams
    print("per-pass microbenchmark (core/batch.py)")
    out = dict(clock="wall time (perf_counter), median of repeats", target="the demo pair's")
    try:
        out["rows"] = microbenchmark(workload.target.adapter, repeats=repeats)
        defaults = CloudConfig()
        prompt = workload.cloud_prompt(workload.request(0, 0, DecodingParams()))
        out["prefill_mixed"] = prefill_microbenchmark(
            workload.target.adapter, prompt, budget=defaults.pass_token_budget,
            max_padding=defaults.max_prefill_padding, repeats=repeats)
    except ValueError as error:
        out["error"] = str(error)
        print(f"per-pass microbenchmark failed: {error}")
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    colours = {}
    for v in results["config"]["variants"]:
        table = results["closed_loop"][v["name"]]
        ns = sorted(table, key=int)
        colour = colours.setdefault(v["mode"], f"C{len(colours)}")
        style = dict(color=colour, linestyle="-" if v["batched"] else "--", marker="o",
                     markersize=3, label=v["name"])
        x = [int(n) for n in ns]
        axes[0].plot(x, [1000 * table[n]["p50_s"] for n in ns], **style)
        axes[1].plot(x, [1000 * table[n]["p99_s"] for n in ns], **style)
        axes[2].plot(x, [table[n]["verified_tokens_per_s"] for n in ns], **style)
    axes[1].axhline(1000 * results["reference"]["bound_s"], color="k", linewidth=0.8,
                    label="capacity bound")
    for ax, label in zip(axes, ("p50 decision latency (ms)", "p99 decision latency (ms)",
                                "verified tokens/s (cloud)")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("robots")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=7)
    fig.suptitle(f"one cloud, N robots closed loop (think {results['config']['think_s']:g} s, "
                 f"{results['config']['rtt_ms']:g} ms round trip); dashed: one session per pass")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tables(results: dict) -> str:
    """fleet.md: the capacity, goals and per-N tables (pasted into docs/fleet.md)."""
    ms = lambda s: "∞" if s is None else f"{1000 * s:.0f}"   # noqa: E731 (None: infinite)
    ref = results["reference"]
    lines = [f"Reference: {ref['variant']} at N = 1, p99 {ms(ref['p99_s'])} ms; capacity bound "
             f"p99 ≤ {ms(ref['bound_s'])} ms.", "",
             "| variant | capacity (robots) |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in results["capacity"].items()]
    lines += ["", "| goal | measured | bound | |", "|---|---|---|---|"]
    lines += [f"| {g['goal']} | {_figure(g['measured'])} | {g['bound']:g} | "
              f"{'met' if g['met'] else '**not met**'} |" for g in results["goals"]]
    for title, key in (("Closed loop", "closed_loop"), ("Back to back (saturation)",
                                                        "saturation")):
        lines += ["", f"{title}:", "",
                  "| variant | N | p50 ms | p99 ms | passes/s | verified tokens/s | "
                  "decisions/s | busy | sessions/pass | padding | failed |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, table in results[key].items():
            for n in sorted(table, key=int):
                s = table[n]
                lines.append(f"| {name} | {n} | {ms(s['p50_s'])} | {ms(s['p99_s'])} | "
                             f"{s['target_passes_per_s']:.1f} | {s['verified_tokens_per_s']:.1f} "
                             f"| {s['decisions_per_s']:.2f} | {s['busy_fraction']:.2f} | "
                             f"{s['sessions_per_pass']:.2f} | {s['padding_fraction']:.2f} | "
                             f"{s['failed']} |")
    micro = results["per_pass_microbenchmark"]
    lines += ["", f"Per-pass microbenchmark (demo target, {micro['clock']}):", ""]
    if "error" in micro:
        lines.append(f"failed: {micro['error']}")
    else:
        lines += ["| sessions × positions | batched ms | one per pass ms | speed-up |",
                  "|---|---|---|---|"]
        lines += [f"| {r['sessions']} × {r['positions']} | {1000 * r['batched_s']:.1f} | "
                  f"{1000 * r['one_per_pass_s']:.1f} | {r['speedup']:.2f} |"
                  for r in micro["rows"]]
        m = micro["prefill_mixed"]
        lines += ["", f"One image prefill ({m['prompt_positions']} positions) and "
                  f"{m['blocks']} blocks of {m['positions']} positions (scheduled: a chunk of "
                  f"{m['chunk']} beside the blocks, the rest alone):", "",
                  "| plan | ms | padding |", "|---|---|---|"]
        lines += [f"| {plan.replace('_', ' ')} | {1000 * m[plan + '_s']:.1f} | "
                  f"{m[plan + '_padding']:.2f} |" for plan in ("separate", "one_pass", "scheduled")]
    return "\n".join(lines) + "\n"


def _figure(x) -> str:
    return "∞" if x is None else f"{x:.2f}"


def _finite(value):
    """JSON has no infinity: null stands for it."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run(args) -> int:
    import torch
    from tqdm import tqdm
    from ..fleet.simulation import cloud_config
    from ..fleet.workload import load
    torch.set_num_threads(1)
    started, load_before = time.monotonic(), os.getloadavg()
    calibration_steps = 300
    if args.quick:
        args.decisions, args.max_robots, args.scenes, args.saturation, calibration_steps = (
            QUICK[k] for k in ("decisions", "max_robots", "scenes", "saturation",
                               "calibration_steps"))
    print("loading the demo pair, rendering scenes, measuring the draft")
    workload = load(args.models, args.scenes, 900 + args.seed, args.block_size,
                    calibration_steps, TIMERS[args.clock])
    fingerprint = workload.target.adapter.fingerprint()
    per_pass = per_pass_microbenchmark(workload, 3 if args.quick else 21)
    with tqdm(unit="decision", mininterval=1.0) as bar:
        runs = Runs(workload, args, bar)
        found = main_runs(args, workload, runs)
    results = dict(config=configuration(args, workload,
                                        cloud_config(fingerprint, True, args.batch_sessions),
                                        cloud_config(fingerprint, False)),
                   machine=machine(load_before), **found, closed_loop=runs.closed,
                   saturation=runs.saturated, per_pass_microbenchmark=per_pass,
                   consistency=runs.consistency(),
                   wall_s=time.monotonic() - started)
    results = _finite(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "fleet.md").write_text(tables(results))
    plot(results, out / "fleet.png")
    print(tables(results))
    mismatched = results["consistency"]["mismatched_scenes"]
    if mismatched:
        print(f"consistency: {len(mismatched)} scenes were answered differently across "
              f"variants (see fleet.json)")
    print(f"wrote {out / 'fleet.json'}, {out / 'fleet.md'} and {out / 'fleet.png'} "
          f"in {results['wall_s']:.0f} s")
    return 0
