"""`spec-vlm demo`: the whole graph, closed loop, in the simulated Go2 world.

Sim world, camera, edge (draft VLM) and controller run in the robot's ROS domain, the cloud
(target VLM with its exit head) in another, joined only by the bridge over an emulated 50 ms
round trip. The robot does a sequence of tasks, each in a fresh scene not used in training:
it is instructed, the plan the edge and cloud decode runs, the robot looks again and is
re-instructed until the answer is `stop` (or after --max-decisions), and the task is judged
against the simulator's ground truth. After the run every decision is decoded again by the
target alone, one thread, in virtual time with measured costs (the live mode, cloud-only
streaming, and one request per token) for a like-for-like comparison. With the edge's
`live_baseline` (config/demo.yaml) each decision is also decoded live by cloud-only
streaming, in ABBA order, and both answers are checked token for token: live vs live.
Every node records the hop timeline (hops.py); once its plan has run, every executed
decision is decided again on its own frame with the sim and the camera paused (its twin):
live time is split into what decoding costs, the software's part and CPU contention
(demo/timeline.py).
Writes demo.json, demo.png, demo_hops.png, the frames and an MCAP bag of the run into --out.
The model pair is loaded and checked (pair.json, both models, exit layers) before any node
starts: a broken pair exits 2 with one line, a graph that fails exits 1.
"""
from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import time
from pathlib import Path

from ..core.user_errors import UserError, blame
from ..sim.episode import MAX_DECISIONS
from . import count, number


def configure(parser) -> None:
    parser.add_argument("--tasks", type=count(), default=20, help="tasks, one scene each")
    parser.add_argument("--quick", action="store_true", help="2 tasks (a smoke run)")
    parser.add_argument("--models", default=None, metavar="DIR",
                        help="model pair folder (target/ with exits/, draft/, optional "
                             "pair.json); default: the trained demo pair installed with the "
                             "package")
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--mode", default=None,
                        choices=("plain", "early_exit", "preemptive", "pipelined", "cloud_led"),
                        help="the edge's decoding mode (default: config/edge.yaml's, unless "
                             "config/demo.yaml sets one)")
    parser.add_argument("-k", "--block-size", type=count(), default=None,
                        help="draft tokens per block (default: config/edge.yaml's)")
    parser.add_argument("--rtt-ms", type=number(float, 0.0), default=None,
                        help="emulated round trip (default: twice config/demo.yaml's "
                             "link_latency_ms)")
    parser.add_argument("--first-seed", type=number(int, 0), default=10_000,
                        help="scene seed of the first task (training uses seeds from 100)")
    parser.add_argument("--max-decisions", type=count(), default=MAX_DECISIONS,
                        help="decisions per task at most")


def _interrupt(signum, frame):
    """SIGTERM (a CI timeout, `kill`) tears the graph down as Ctrl-C does."""
    raise KeyboardInterrupt


def run(args) -> int:
    from ..demo import graph
    from ..demo.pair import load_checked, open_pair
    began = time.monotonic()
    tasks = 2 if args.quick else args.tasks
    try:
        graph.check_installed()
    except FileNotFoundError as error:
        raise UserError(str(error)) from error
    settings = graph.settings(args.first_seed, args.mode, args.block_size, args.rtt_ms)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    pair = open_pair(args.models)
    loaded = load_checked(pair, settings.dtype)
    with blame(f"--out {out}"):
        out.mkdir(parents=True, exist_ok=True)
    bag = out / "demo_bag"
    for old in (bag, out / "logs", out / "frames", out / "hops"):     # this run's, not a mix with the last
        if old.exists():
            shutil.rmtree(old)
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops the graph even when the demo was started with SIGINT ignored (in the
    # background of a non-interactive shell), as the nodes do (nodes/common.py).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        try:
            results, paused, timing = _closed_loop(pair, settings, tasks, args, out, bag)
        except (RuntimeError, TimeoutError, FileNotFoundError, ValueError) as error:
            print(f"spec-vlm demo: the graph failed: {error}\nnode logs: {out / 'logs'}",
                  file=sys.stderr)
            return 1
        timing["replay_s"] = _replay(pair, loaded, results, settings)
    except KeyboardInterrupt:
        print("spec-vlm demo: interrupted; the graph was stopped", file=sys.stderr)
        return 130
    from ..demo import report, timeline
    timing["total_s"] = time.monotonic() - began
    report.print_decisions(results)
    summary = report.write(out, results, timing, config=dict(
        vars(settings), tasks=tasks, models=str(pair.root), exit_layers=pair.exit_layers,
        exit_adapters=str(pair.exit_adapters) if pair.exit_adapters else None,
        max_decisions=args.max_decisions, max_new_tokens=pair.max_new_tokens),
        paused=paused, recorded=timeline.by_request(out / "hops"))
    print(f"\n{summary['succeeded']}/{summary['tasks']} tasks succeeded; "
          f"wall time {timing['total_s']:.0f} s (graph start {timing['start_s']:.0f} s, "
          f"tasks {timing['tasks_s']:.0f} s (of it paused twins "
          f"{timing['paused_twins_s']:.0f} s), graph stop {timing['stop_s']:.0f} s, replay "
          f"{timing['replay_s']:.0f} s)")
    print(report.replayed(summary))
    if settings.live_baseline:
        print(report.live_vs_live(summary))
    print(report.split(summary))
    print(report.goal(summary))
    print(f"wrote {out / 'demo.json'}, {out / 'demo.png'}, {out / 'demo_hops.png'} and the "
          f"bag {bag}")
    return 0


def _closed_loop(pair, settings, tasks: int, args, out: Path, bag: Path):
    """Start the graph, do the tasks (each executed decision with its paused twin), stop the
    graph (also on failure or Ctrl-C)."""
    from tqdm import tqdm

    from ..demo import graph, report
    from ..nodes.demo_driver import DemoDriver
    from ..sim.episode import demo_seeds, run_task
    t0 = time.monotonic()
    results = []
    with contextlib.ExitStack() as stack:
        print(f"starting the graph (robot and cloud domains, {settings.rtt_ms:g} ms round "
              f"trip); node logs in {out / 'logs'}")
        robot = graph.start(stack, pair, settings, pair.max_new_tokens, out / "logs",
                            out / "hops")
        driver = DemoDriver(robot.context, bag, live_baseline=settings.live_baseline,
                            paused_twins=True)
        stack.callback(driver.close)
        robot.add_node(driver)
        driver.wait_for_graph(30.0)
        started = time.monotonic()
        for seed in tqdm(demo_seeds(tasks, args.first_seed), desc="tasks", unit="task"):
            result = run_task(driver, seed, args.max_decisions, pair.task_mix)
            results.append(result)
            tqdm.write(report.task_line(len(results), result))
        done = time.monotonic()
    return results, driver.twins, {
        "start_s": started - t0, "tasks_s": done - started, "stop_s": time.monotonic() - done,
        "paused_twins_s": sum(twin["twin_s"] for twin in driver.twins.values())}


def _replay(pair, loaded, results, settings) -> float:
    """Decode every decision again, one thread, against one cloud for the whole run (as the
    live cloud serves them): in every mode and both cloud-only baselines. The live mode's
    replay is also kept as "speculative", the like-for-like figure beside the baselines."""
    import torch
    from tqdm import tqdm

    from ..demo.replay import Replayer, first_step_s
    t0 = time.monotonic()
    torch.set_num_threads(1)
    target, draft, adapters = loaded.target, loaded.draft, loaded.exit_adapters
    replayer = Replayer(target, draft, settings.block_size, pair.max_new_tokens,
                        settings.rtt_ms, pair.exit_layers, adapters)
    decisions = [d for r in results for d in r.decisions if d.stats.get("ok")]
    for d in tqdm(decisions, desc="replaying the decisions", unit="decision"):
        d.stats["first_step_s"] = first_step_s(target.tokenizer, d.token_ids,
                                               d.stats["token_latencies_s"])
        if d.baseline.get("ok"):
            d.baseline["first_step_s"] = first_step_s(target.tokenizer, d.baseline["token_ids"],
                                                      d.baseline["token_latencies_s"])
        for mode, stats in replayer.every_mode(d).items():
            stats["first_step_s"] = first_step_s(target.tokenizer, stats["token_ids"],
                                                 stats["token_latencies_s"])
            d.replays[mode] = stats
        d.replays["speculative"] = d.replays[settings.mode]
        if settings.mode == "cloud_led":
            # The robot sees only the verdicts on its drafts, not the cloud's own passes.
            d.stats["target_passes_per_token"] = d.replays["speculative"]["target_passes_per_token"]
    return time.monotonic() - t0
