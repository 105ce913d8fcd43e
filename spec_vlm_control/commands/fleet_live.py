"""`spec-vlm fleet-live`: fleet-bench's live check: N robots on the real ROS graph against
one cloud, each decision's latency beside fleet-bench's p50 at the same N.

Node processes as deployed (fleet/live.py): one cloud node (demo pair's target, its default
batched scheduler) and cloud bridge; per robot, in its own ROS domain, an edge node of the
variant's mode and a robot bridge, with the emulated round trip. The robots run fleet-bench's
closed loop (the same scenes, think time and seeded start offsets) in wall time. Every
decision's tokens are checked against the target's own greedy answer. Writes
fleet_live.json and fleet_live.png; stops by itself (each decision waits at most
--decision-timeout-s).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from ..core.user_errors import UserError, blame
from . import count, number

VARIANTS = ("plain", "preemptive", "pipelined", "cloud_led")


def configure(parser) -> None:
    parser.add_argument("--robots", type=count(), default=4)
    parser.add_argument("--decisions", type=count(), default=20,
                        help="measured decisions per robot and variant, after one warm-up")
    parser.add_argument("--variants", type=_modes, default=["cloud_led", "plain"],
                        help=f"edge modes, comma-separated (of {', '.join(VARIANTS)}), each "
                             "against the cloud's batched scheduler")
    parser.add_argument("--think-s", type=number(float, 0.0), default=1.5,
                        help="a robot's fixed think time between decisions")
    parser.add_argument("--rtt-ms", type=number(float, 0.0), default=50.0)
    parser.add_argument("-k", "--block-size", type=count(), default=4)
    parser.add_argument("--scenes", type=count(), default=64,
                        help="distinct scenes (fleet-bench's: the same table of scenes)")
    parser.add_argument("--seed", type=number(int, 0), default=0,
                        help="arrivals and scenes (the scene sampler's seed is 900 + seed)")
    parser.add_argument("--bench", default="bench/fleet/fleet.json",
                        help="fleet-bench's results, for its p50 at N = --robots")
    parser.add_argument("--out", default="bench/fleet_live", help="output folder")
    parser.add_argument("--decision-timeout-s", type=number(float, 0.0, low_open=True),
                        default=30.0, help="a decision without statistics by then has failed")
    parser.add_argument("--domains", type=_domains, default=None,
                        help="ROS domain ids, the cloud's then each robot's (default: drawn "
                             "at random, as spec-vlm demo does)")
    parser.add_argument("--models", default=None, metavar="DIR",
                        help="a demo pair folder (default: the packaged pair)")


def _modes(text: str) -> list[str]:
    import argparse
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or set(modes) - set(VARIANTS):
        raise argparse.ArgumentTypeError(f"{text}: modes are {', '.join(VARIANTS)}")
    return modes


def _domains(text: str) -> list[int]:
    import argparse
    try:
        ids = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of domain ids") from None
    if min(ids) < 1 or max(ids) > 232:
        raise argparse.ArgumentTypeError(f"{text}: domain ids are 1..232")
    return ids


def bench_p50(path: Path, variant: str, robots: int) -> dict:
    """fleet-bench's closed-loop p50 and p99 of `variant` at N = `robots`, or why not."""
    if not path.is_file():
        return dict(source=str(path), missing=f"{path} does not exist (run spec-vlm fleet-bench)")
    try:
        run = json.loads(path.read_text())["closed_loop"][variant][str(robots)]
    except (ValueError, KeyError) as error:
        return dict(source=str(path), missing=f"{path} has no closed-loop run of {variant} at "
                                              f"N = {robots} ({error!r})")
    return dict(source=str(path), p50_s=run["p50_s"], p99_s=run["p99_s"],
                decisions=run["decisions"])


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    variants = results["variants"]
    fig, axes = plt.subplots(1, len(variants), figsize=(5 * len(variants), 4.6), sharey=True,
                             squeeze=False)
    for ax, (name, v) in zip(axes[0], variants.items()):
        for d in v["decisions"]:
            if d["index"] > 0 and d["ok"]:
                ax.plot(d["robot"] + 0.3 * (d["index"] / (1 + results["config"]["decisions"])
                                            - 0.5), 1000 * d["total_s"], "o", color="C0",
                        markersize=3, alpha=0.6)
        if v["summary"]["p50_s"] is not None:
            ax.axhline(1000 * v["summary"]["p50_s"], color="C0", label="live p50")
        if "p50_s" in v["bench"]:
            ax.axhline(1000 * v["bench"]["p50_s"], color="C1", linestyle="--",
                       label=f"fleet-bench p50, N = {results['config']['robots']}")
        ax.set_title(name)
        ax.set_xlabel("robot")
        ax.set_xticks(range(results["config"]["robots"]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("decision latency, wall (ms)")
    c = results["config"]
    fig.suptitle(f"{c['robots']} robots on the ROS graph, closed loop\n(think {c['think_s']:g} "
                 f"s, {c['rtt_ms']:g} ms round trip); load average "
                 f"{results['machine']['load_average_before'][0]:.1f} before")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    from ..demo.graph import check_installed
    from ..demo.pair import load_checked, open_pair
    from ..fleet import live
    from ..fleet.workload import DraftCost, Workload, render
    from .fleet_bench import machine
    began, load_before = time.monotonic(), os.getloadavg()
    try:
        check_installed()
    except FileNotFoundError as error:
        raise UserError(str(error)) from error
    if args.domains is not None and len(args.domains) != args.robots + 1:
        raise UserError(f"--domains names {len(args.domains)} domains: {args.robots + 1} are "
                        "needed (the cloud's, then each robot's)")
    out = Path(args.out)
    with blame(f"--out {out}"):
        out.mkdir(parents=True, exist_ok=True)
    pair = open_pair(args.models)
    loaded = load_checked(pair, "fp32")
    print(f"rendering {args.scenes} scenes (sampler seed {900 + args.seed})")
    workload = Workload(loaded.target, loaded.draft, list(pair.exit_layers),
                        loaded.exit_adapters, render(args.scenes, 900 + args.seed, pair.task_mix),
                        args.block_size, pair.max_new_tokens, DraftCost(0.0, 0.0),
                        900 + args.seed, str(pair.root))
    settings = live.LiveSettings(args.robots, args.decisions, args.think_s, args.rtt_ms,
                                 args.seed, args.decision_timeout_s)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runs = {}
    try:
        with contextlib.ExitStack() as stack:
            print(f"starting the graph: a cloud and {args.robots} robots, each in its own ROS "
                  f"domain, {args.rtt_ms:g} ms round trip; node logs in {out / 'logs'}")
            t0 = time.monotonic()
            fleet = live.LiveFleet(stack, workload, pair, settings, out / "logs",
                                   args.variants[0], args.domains)
            print(f"the graph is ready ({time.monotonic() - t0:.0f} s)")
            for mode in args.variants:
                t0 = time.monotonic()
                print(f"{mode}: {args.robots} robots x {args.decisions + 1} decisions")
                runs[f"{mode} batched"] = (fleet.run(mode, _progress), time.monotonic() - t0)
                print(f"{mode}: done in {time.monotonic() - t0:.0f} s (starting its edges "
                      "included)")
            domains = fleet.domains
    except (RuntimeError, TimeoutError, ValueError) as error:
        print(f"spec-vlm fleet-live: the graph failed: {error}\nnode logs: {out / 'logs'}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spec-vlm fleet-live: interrupted; the graph was stopped", file=sys.stderr)
        return 130
    load_after = os.getloadavg()
    answered = [d for decisions, _ in runs.values() for d in decisions if d.ok]
    print(f"the target's own answers of {len({d.scene for d in answered})} scenes")
    reference = live.target_answers(workload, answered)
    variants = {}
    for name, (decisions, wall_s) in runs.items():
        rows = live.as_dicts(decisions)
        for row in rows:
            row["same_as_target"] = row["tokens"] == reference[row["scene"]] if row["ok"] \
                else None
        variants[name] = dict(summary=live.summary(decisions, args.robots), wall_s=wall_s,
                              same_as_target=sum(bool(r["same_as_target"]) for r in rows),
                              answered=sum(r["ok"] for r in rows), decisions=rows,
                              bench=bench_p50(Path(args.bench), name, args.robots))
    results = dict(
        config=dict(robots=args.robots, decisions=args.decisions, warm_up="one decision per "
                    "robot, not measured", think_s=args.think_s, rtt_ms=args.rtt_ms,
                    block_size=args.block_size, max_new_tokens=pair.max_new_tokens,
                    scenes=args.scenes, scene_seed=900 + args.seed, seed=args.seed,
                    arrivals="first decision at fleet-bench's seeded offset in [0, think_s)",
                    latency="RequestStats.total_s: the edge sends its request -> its last "
                            "verified token, wall clock",
                    graph="cloud node (demo target, fp32, its batched scheduler, config/cloud.yaml "
                          "+ demo.yaml) + cloud bridge in one ROS domain; per robot an edge node "
                          "(demo draft) + robot bridge in its own ROS domain; every node its own "
                          "process; bridges over zenoh on loopback, half the round trip each way",
                    domains=domains, models=str(pair.root), exit_layers=pair.exit_layers,
                    decision_timeout_s=args.decision_timeout_s),
        machine=dict(machine(load_before), load_average_after=load_after,
                     threads="1 per node (config/demo.yaml)"),
        variants=variants, wall_s=time.monotonic() - began)
    (out / "fleet_live.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "fleet_live.png")
    ms = lambda s: "—" if s is None else f"{1000 * s:.0f}"    # noqa: E731
    for name, v in variants.items():
        s, b = v["summary"], v["bench"]
        bench = (f"fleet-bench N = {args.robots}: p50 {ms(b['p50_s'])} ms, p99 "
                 f"{ms(b['p99_s'])} ms" if "p50_s" in b else f"fleet-bench: {b['missing']}")
        print(f"{name}, {args.robots} robots live: p50 {ms(s['p50_s'])} ms, p99 "
              f"{ms(s['p99_s'])} ms ({s['decisions']} decisions, {s['failed']} failed, "
              f"{v['same_as_target']}/{v['answered']} answered as the target alone) | {bench}")
    print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; wrote "
          f"{out / 'fleet_live.json'} and {out / 'fleet_live.png'} in {results['wall_s']:.0f} s")
    return 0


def _progress(d) -> None:
    state = f"{1000 * d.total_s:.0f} ms" if d.ok else f"failed: {d.error}"
    print(f"  robot{d.robot} decision {d.index}{' (warm-up)' if not d.index else ''}: {state}",
          flush=True)
