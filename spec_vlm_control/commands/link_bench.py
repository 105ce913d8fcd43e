"""`spec-vlm bench-link`: where the time of a live round trip goes, protocol only.

The edge, the robot-side bridge, the cloud-side bridge and the cloud run as their installed
node processes, as a deployment starts them (graphs.py, config/ YAML), the robot and the
cloud each in a ROS domain of its own, joined by zenoh on loopback with the bridges' link
emulator adding half the round trip each way. No sim, no camera node: this process stands in
for the operator and the camera, publishing a pre-rendered scene's JPEG and its instruction,
one decision after another, until the edge has done --round-trips rounds. Every process
records the hop timeline (hops.py) and the busy-CPU helper keeps a core from idling, as in
the slow tests.

Per round trip (a block and its final verdict): overhead = (edge receipt of the verdict -
edge send of the block) - emulated round trip - the cloud's pass - the block's wait behind
the cloud's other work (its request's prefill). Reports its median and p95 and each hop's,
in a JSON file and a PNG beside it, for each layout of --layouts (`separate`: four node
processes; `site`: the edge with the robot's bridge and the cloud with its bridge, two
processes, colocated.py), each ROS executor of --executors (nodes/common.py,
SPEC_VLM_EXECUTOR) and each GIL switch interval of --switch-intervals (SPEC_VLM_SWITCH_
INTERVAL_MS), one graph after the other in the same run: a before and an after.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

from ..busy_cpu import BusyCpu
from ..core.user_errors import UserError, blame
from ..hops import QUEUE
from .. import switch_interval
from . import count, number

EDGE_LED = ("plain", "early_exit", "preemptive")    # one block in flight: clean round trips
WARM_UP_DECISIONS = 2                                # first passes pay torch's start-up
LAYOUTS = ("separate", "site")
EXECUTORS = ("multi", "events")


def configure(parser) -> None:
    parser.add_argument("--round-trips", type=count(), default=200,
                        help="measured round trips (blocks answered by a final verdict)")
    parser.add_argument("--quick", action="store_true", help="10 round trips (a smoke run)")
    parser.add_argument("--rtt-ms", type=number(float, 0.0), default=50.0,
                        help="emulated round trip (half each way, in the bridges)")
    parser.add_argument("--models", default=None, metavar="DIR",
                        help="model pair folder (default: the demo pair installed with the "
                             "package)")
    parser.add_argument("--mode", default="plain", choices=EDGE_LED,
                        help="the edge's decoding mode (one block in flight at a time)")
    parser.add_argument("-k", "--block-size", type=count(), default=2,
                        help="draft tokens per block (small: more round trips per decision)")
    parser.add_argument("--out", default="bench/link", help="output folder (JSON + PNG)")
    parser.add_argument("--executors", default="multi,events",
                        help="the nodes' ROS executors to compare, in this order: multi "
                             "(rclpy MultiThreadedExecutor), events (rclpy EventsExecutor)")
    parser.add_argument("--layouts", default="separate,site",
                        help="process layouts to compare, in this order: separate (edge, "
                             "bridges, cloud: four processes), site (edge + robot bridge, "
                             "cloud + cloud bridge: two processes)")
    parser.add_argument("--switch-intervals", default=None, metavar="MS,...",
                        help="the node processes' GIL switch intervals to compare, in ms "
                             f"(default: the nodes' own, {switch_interval.DEFAULT_MS:g})")
    parser.add_argument("--no-busy-cpu", action="store_true",
                        help="do not run the busy-CPU helper (a caller runs its own)")


def run(args) -> int:
    from ..demo.graph import check_installed
    from ..demo.pair import open_pair
    try:
        check_installed()
    except FileNotFoundError as error:
        raise UserError(str(error)) from error
    pair = open_pair(args.models)
    out = Path(args.out)
    with blame(f"--out {out}"):
        out.mkdir(parents=True, exist_ok=True)
    wanted = 10 if args.quick else args.round_trips
    executors = choices("--executors", args.executors, EXECUTORS)
    layouts = choices("--layouts", args.layouts, LAYOUTS)
    intervals = switch_intervals(args.switch_intervals)
    config = {"layouts": layouts, "executors": executors, "switch_intervals_ms": intervals,
              "round_trips": wanted,
              "rtt_ms": args.rtt_ms,
              "mode": args.mode, "block_size": args.block_size, "models": str(pair.root),
              "busy_cpu": not args.no_busy_cpu, "warm_up_decisions": WARM_UP_DECISIONS}
    cpu = BusyCpu()
    variants = {}
    try:
        cpu.keep_awake(not args.no_busy_cpu)
        for name, layout, executor, interval in variant_names(layouts, executors, intervals):
            print(f"{name}: starting the graph (edge, bridges, cloud)")
            variants[name] = measure(pair, args, out / name.replace(" ", "-"), wanted,
                                     executor, layout, interval)
    except (RuntimeError, TimeoutError) as error:
        print(f"spec-vlm bench-link: the graph failed: {error}\nnode logs: {out}/*/logs",
              file=sys.stderr)
        return 1
    finally:
        cpu.keep_awake(False)
    report = {"config": config, "machine": machine(), "variants": variants}
    (out / "link_bench.json").write_text(json.dumps(report, indent=1))
    plot(report, out / "link_bench.png")
    print_summary(report)
    print(f"wrote {out / 'link_bench.json'} and {out / 'link_bench.png'}")
    return 0


def choices(option: str, given: str, allowed: tuple) -> list[str]:
    chosen = [c for c in given.split(",") if c]
    if not chosen or set(chosen) - set(allowed):
        raise UserError(f"{option} {given!r}: a list of {', '.join(allowed)}")
    return chosen


def switch_intervals(given) -> list[float]:
    if given is None:
        return [switch_interval.DEFAULT_MS]
    try:
        values = [switch_interval.milliseconds(v) for v in given.split(",") if v]
    except ValueError as error:
        raise UserError(f"--switch-intervals {given!r}: {error}") from None
    if not values:
        raise UserError(f"--switch-intervals {given!r}: a list of milliseconds")
    return values


def variant_names(layouts, executors, intervals) -> list[tuple[str, str, str, float]]:
    """(name, layout, executor, switch interval) of every variant, in the order run; the
    interval is named only when several are compared."""
    return [(f"{layout} {executor}" + (f" {ms:g} ms" if len(intervals) > 1 else ""),
             layout, executor, ms)
            for layout, executor, ms in itertools.product(layouts, executors, intervals)]


def scenes(n: int = 8) -> list[tuple[bytes, str]]:
    """(JPEG, instruction) of `n` fresh scenes of the simulated world, rendered here once."""
    from ..camera.frame import encode_jpeg
    from ..sim.scenes import SceneSampler
    sampler = SceneSampler(seed=20_000)
    return [(encode_jpeg(s.frame.rgb, 90), s.task.instruction)
            for s in (sampler.sample() for _ in range(n))]


def measure(pair, args, out: Path, wanted: int, executor: str, layout: str,
            interval_ms: float) -> dict:
    """Start the graph in `layout` with the hop timeline on, `executor` and the GIL switch
    interval `interval_ms` in every node, decide until `wanted` round trips are measured,
    stop it; the merged timeline's summary."""
    from .. import hops
    from ..nodes.common import EXECUTOR_ENV
    hop_dir = out / "hops"
    for old in (hop_dir, out / "logs"):
        if old.exists():
            shutil.rmtree(old)
    (out / "logs").mkdir(parents=True)
    settings = {hops.ENV: str(hop_dir), EXECUTOR_ENV: executor,
                switch_interval.ENV: f"{interval_ms:g}"}
    os.environ.update(settings)                     # the node processes inherit them
    try:
        with contextlib.ExitStack() as stack:
            robot, began_ns = _start(stack, pair, args, out / "logs", layout)
            for name in settings:
                os.environ.pop(name)
            decisions = _decide(robot, wanted)
    finally:
        for name in settings:
            os.environ.pop(name, None)
    trips = [t for t in hops.round_trips(hops.read_events(hop_dir))
             if t.times[("block", "edge.send")] >= decisions["measured_from_ns"]]
    summary = hops.summarize(trips, args.rtt_ms)
    emulated_ns = round(args.rtt_ms * 1e6)
    return {"decisions": decisions["count"], "failed_decisions": decisions["failed"],
            "decision_records": decisions["records"], "summary": summary,
            "round_trip_records": [
                {"request": t.request, "round": t.round, "missing": t.missing,
                 "overhead_ms": None if not t.complete else t.overhead_ns(emulated_ns) / 1e6,
                 "segments_ms": {k: v / 1e6 for k, v in t.segments_ns().items()}}
                for t in trips],
            "setup_s": (decisions["measured_from_ns"] - began_ns) / 1e9}


def _start(stack, pair, args, log_dir: Path, layout: str):
    """Cloud, its bridge, the robot's bridge and the edge: each its installed executable
    (`separate`), or two by two in `cloud_site` and `robot_site` (`site`)."""
    from ..demo.graph import domain_ids
    from ..graphs import CLOUD_SITE, EDGE, ROBOT_SITE, VERIFIER
    from ..processes import CONFIG, RosGraph, free_port, start_bridges
    began = time.monotonic_ns()
    robot_domain, cloud_domain = domain_ids()
    robot = stack.enter_context(contextlib.closing(
        RosGraph(robot_domain, log_dir, probe_name="link_bench_robot")))
    cloud = stack.enter_context(contextlib.closing(
        RosGraph(cloud_domain, log_dir, probe_name="link_bench_cloud")))
    models = {"target_model": str(pair.target), "draft_model": str(pair.draft)}
    params = {"cloud": {"threads": 1, "exit_layers": pair.exit_layers or [-1]},
              "edge": {"threads": 1, "mode": args.mode, "block_size": args.block_size,
                       "max_new_tokens": pair.max_new_tokens,
                       "max_frame_age_at_decision_s": 5.0},
              "bridge": {"link_latency_ms": args.rtt_ms / 2}}
    if layout == "site":
        endpoint = f"tcp/127.0.0.1:{free_port()}"
        models.update(listen_endpoint=endpoint, cloud_endpoint=endpoint)
        verifier = cloud.start_node(CLOUD_SITE, models, CLOUD_SITE.share(params), wait=False)
        edge = robot.start_node(ROBOT_SITE, models, ROBOT_SITE.share(params), wait=False)
    else:
        verifier = cloud.start_node(VERIFIER, models, params["cloud"], wait=False)
        edge = robot.start_node(EDGE, models, params["edge"], wait=False)
        start_bridges(robot, cloud, CONFIG, latency_ms=args.rtt_ms / 2)
    for graph, process in ((cloud, verifier), (robot, edge)):
        graph.wait_for_log(process, "ready:", timeout=120.0)
    return robot, began


def _decide(robot, wanted: int) -> dict:
    """Frame, instruction, wait for the decision's RequestStats; again until the edge has
    done `wanted` measured rounds (after the warm-up decisions)."""
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import String
    from tqdm import tqdm

    from .. import topics
    from ..msg import RequestStats
    from ..nodes.common import PROTOCOL_QOS, SENSOR_QOS
    node = robot.node
    done = threading.Condition()
    stats: list = []

    def on_stats(msg):
        with done:
            stats.append(msg)
            done.notify_all()
    node.create_subscription(RequestStats, topics.REQUEST_STATS, on_stats, PROTOCOL_QOS)
    image_pub = node.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
    instruction_pub = node.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
    robot.wait_for(lambda: instruction_pub.get_subscription_count() > 0
                   and image_pub.get_subscription_count() > 0, 30.0, "the edge to subscribe")
    pictures = scenes()
    rounds = failed = decisions = 0
    measured_from = None
    measured = []                                 # per measured decision: scene and stats
    with tqdm(total=wanted, desc="round trips", unit="round trip") as bar:
        while rounds < wanted:
            if decisions == WARM_UP_DECISIONS:
                measured_from = time.monotonic_ns()
            jpeg, instruction = pictures[decisions % len(pictures)]
            frame = CompressedImage(format="jpeg", data=jpeg)
            frame.header.stamp = node.get_clock().now().to_msg()
            image_pub.publish(frame)
            time.sleep(0.05)                     # the frame reaches the edge first
            with done:
                seen = len(stats)
                instruction_pub.publish(String(data=instruction))
                if not done.wait_for(lambda: len(stats) > seen, timeout=60.0):
                    raise TimeoutError(f"no RequestStats for decision {decisions + 1} "
                                       f"within 60 s")
                result = stats[-1]
            decisions += 1
            if not result.ok:
                failed += 1
            elif measured_from is not None:
                rounds += result.rounds
                bar.update(min(result.rounds, wanted - bar.n))
                measured.append({"scene": (decisions - 1) % len(pictures),
                                 "tokens": result.tokens, "rounds": result.rounds,
                                 "mean_accepted_per_round": result.mean_accepted_per_round,
                                 "total_s": result.total_s})
    return {"count": decisions - WARM_UP_DECISIONS, "failed": failed,
            "measured_from_ns": measured_from, "records": measured}


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or None,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "rmw": os.environ.get("RMW_IMPLEMENTATION", "default (rmw_fastrtps_cpp)")}


def print_summary(report: dict) -> None:
    variants = report["variants"]
    names = list(variants)
    summaries = [variants[n]["summary"] for n in names]
    print(f"\nemulated round trip {summaries[0]['emulated_rtt_ms']:g} ms; medians (p95) in ms")
    print(f"{'':40s}" + "".join(f"{n:>22s}" for n in names))

    def row(label, quantiles):
        print(f"{label:40s}" + "".join(
            f"{q['median_ms'] or 0:>12.2f} ({q['p95_ms'] or 0:7.2f})" for q in quantiles))
    print(f"{'complete round trips':40s}" + "".join(f"{s['complete']:>22d}" for s in summaries))
    for key in ("overhead", "round_trip", "pass", "queued"):
        row(key.replace("_", " "), [s[key] for s in summaries])
    for name in summaries[0]["segments"]:
        row(name[:40], [s["segments"][name] for s in summaries])
    for n, s in zip(names, summaries):
        if s["missing_points"]:
            print(f"{n}: incomplete round trips, missing points: {s['missing_points']}")


def plot(report: dict, path: Path) -> None:
    """Per variant: each hop's median stacked (pass, queue and emulated latency left out),
    and the distribution of the overhead per round trip."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    variants = report["variants"]
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(13, 5))
    colours = plt.get_cmap("tab20").colors
    for row, (name, variant) in enumerate(variants.items()):
        s, left = variant["summary"], 0.0
        for i, (segment, q) in enumerate(s["segments"].items()):
            if segment in ("pass", QUEUE) or q["median_ms"] is None:
                continue
            width = max(0.0, q["median_ms"])
            bars.barh(row, width, left=left, color=colours[i % len(colours)],
                      label=segment if row == 0 else None)
            left += width
        overheads = sorted(r["overhead_ms"] for r in variant["round_trip_records"]
                           if r["overhead_ms"] is not None)
        if overheads:
            cdf.plot(overheads, [(i + 1) / len(overheads) for i in range(len(overheads))],
                     label=f"{name}: median {s['overhead']['median_ms']:.2f} ms, "
                           f"p95 {s['overhead']['p95_ms']:.2f} ms")
    bars.set_yticks(range(len(variants)), list(variants))
    bars.set_xlabel("ms: median of each hop (emulated latency, queue and pass removed)")
    bars.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    cdf.set_xlabel("overhead per round trip, ms")
    cdf.set_ylabel("fraction of round trips")
    cdf.set_title(f"emulated round trip {report['config']['rtt_ms']:g} ms")
    cdf.legend(fontsize=8)
    cdf.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
