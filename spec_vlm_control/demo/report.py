"""The demo's report: a line per task while it runs, then a table per decision, demo.json
(config, decisions, tasks, summary), the frames the edge decided on, demo.png (each
task's trajectory in its room, and a latency timeline) and demo_hops.png (where each
decision's live time went, and live vs paused vs replayed)."""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path

from ..sim.episode import TaskResult
from .. import hops
from . import timeline
from .replay import BASELINES, MODES

TRAJECTORY_HZ = 10.0     # odometry kept in demo.json (the bag has all of it)
GOAL_OVER_STREAMING = 0.77   # the demo's goal: decision time over cloud-only streaming's
GOAL_PASSES_PER_TOKEN = 0.5  # ... with at most this many target passes per committed token
LONG_ANSWER_TOKENS = 8       # a three-step answer: verb value ; verb value ; verb value


def task_line(number: int, result: TaskResult) -> str:
    answers = ", ".join(repr(d.answer.strip()) if d.stats.get("ok") else
                        f"({d.stats.get('error') or d.plan_status or 'no answer'})"
                        for d in result.decisions)
    verdict = "succeeded" if result.succeeded else "failed"
    return (f"task {number} (scene {result.seed}) {result.instruction!r}: {verdict} after "
            f"{len(result.decisions)} decision(s): {answers}")


def _ms(value) -> str:
    return "—" if value is None else f"{1000 * value:.0f}"


def print_decisions(results: list[TaskResult]) -> None:
    print("\nper decision, live: time to first verified step and total decode time (ms), "
          "accepted draft tokens per round, early-verdict hit rate, target passes per token;\n"
          "live baseline (cloud-only streaming, same frame, ABBA order): first step and total "
          "(ms), token-identical answer;\n"
          "replayed after the run (one thread, same prompt and link): the same mode, "
          "cloud-only streaming, one request per token (total ms)")
    print(f"{'task':>4} {'dec':>3}  {'first step':>10} {'total':>7} {'acc/round':>9} "
          f"{'early hit':>9} {'passes/tok':>10} | {'first step':>10} {'total':>7} {'same':>4} "
          f"| {'same mode':>9} {'stream':>7} {'1 req/tok':>9}  answer")
    for n, result in enumerate(results, 1):
        for i, d in enumerate(result.decisions, 1):
            s, r = d.stats, d.replays
            if not s.get("ok"):
                print(f"{n:4d} {i:3d}  failed: {s.get('error') or d.plan_status}")
                continue
            b = d.baseline if d.baseline.get("ok") else {}
            same = {True: "yes", False: "NO"}.get(b.get("same_as_live"), "—")
            print(f"{n:4d} {i:3d}  {_ms(s.get('first_step_s')):>10} {_ms(s['total_s']):>7} "
                  f"{s['mean_accepted_per_round']:9.2f} {s['early_hit_rate']:9.2f} "
                  f"{s['target_passes_per_token']:10.2f} | {_ms(b.get('first_step_s')):>10} "
                  f"{_ms(b.get('total_s')):>7} {same:>4} | "
                  f"{_ms(r.get('speculative', {}).get('total_s')):>9} "
                  f"{_ms(r.get('stream', {}).get('total_s')):>7} "
                  f"{_ms(r.get('per_token', {}).get('total_s')):>9}  {d.answer.strip()!r}")
        print(f"{'':4} task {'succeeded' if result.succeeded else 'FAILED'}: "
              f"{result.instruction!r} (scene {result.seed})")


def write(out: Path, results: list[TaskResult], timing: dict, config: dict,
          paused: dict[int, dict], recorded: dict[int, timeline.RequestHops]) -> dict:
    """`paused`: the paused twins' stats by live request id; `recorded`: the hop records
    by request id (timeline.by_request)."""
    frames = out / "frames"
    frames.mkdir(exist_ok=True)
    decisions, tasks = [], []
    for n, result in enumerate(results, 1):
        first = len(decisions)
        for i, d in enumerate(result.decisions, 1):
            row = {k: v for k, v in asdict(d).items() if k != "jpeg"}
            row.update(task=n, decision=i, says_stop=d.says_stop,
                       timeline=timeline.decision(recorded.get(d.request_id), d.stats,
                                                  config["rtt_ms"]),
                       paused=dict(paused.get(d.request_id, {"ok": False})))
            if row["paused"]["ok"]:
                row["paused"]["timeline"] = timeline.decision(
                    recorded.get(row["paused"]["request_id"]), row["paused"], config["rtt_ms"])
            if d.jpeg:
                name = f"task{n:02d}_decision{i}.jpg"
                (frames / name).write_bytes(d.jpeg)
                row["frame"] = f"frames/{name}"
            decisions.append(row)
        tasks.append(dict(task=n, seed=result.seed, instruction=result.instruction,
                          succeeded=result.succeeded, start=asdict(result.start),
                          end=asdict(result.end), decisions=list(range(first, len(decisions))),
                          trajectory=_thin(result.trajectory)))
    summary = _summary(results, decisions)
    summary["goal"] = _goal(results, decisions)
    live_trips = [t for d in decisions if d["request_id"] in recorded
                  for t in recorded[d["request_id"]].trips]
    summary["hops"] = hops_summary = hops.summarize(live_trips, config["rtt_ms"])
    summary["split"] = _split(decisions, hops_summary)
    (out / "demo.json").write_text(json.dumps(dict(config=config, timing=timing,
                                                   summary=summary, tasks=tasks,
                                                   decisions=decisions), indent=1))
    plot(results, out / "demo.png")
    plot_hops(decisions, summary["split"], config["rtt_ms"], out / "demo_hops.png")
    return summary


def _thin(trajectory) -> list:
    kept, last = [], -math.inf
    for point in trajectory:
        if point[0] - last >= 1 / TRAJECTORY_HZ or point is trajectory[-1]:
            kept.append(list(point))
            last = point[0]
    return kept


def _summary(results: list[TaskResult], decisions: list[dict]) -> dict:
    ok = [d for d in decisions if d["stats"].get("ok")]

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None
    summary = dict(tasks=len(results), succeeded=sum(r.succeeded for r in results),
                   decisions=len(decisions), decisions_ok=len(ok))
    summary["success_rate"] = summary["succeeded"] / max(1, len(results))
    for key in ("first_step_s", "total_s", "mean_accepted_per_round", "early_hit_rate",
                "target_passes_per_token"):
        summary[f"median_{key}"] = median(d["stats"].get(key) for d in ok)
    for mode in ("speculative",) + tuple(MODES) + BASELINES:
        for key in ("first_step_s", "total_s"):
            summary[f"median_{mode}_{key}"] = median(d["replays"].get(mode, {}).get(key)
                                                     for d in ok)
        summary[f"{mode}_same_answer"] = sum(bool(d["replays"].get(mode, {}).get("same_as_live"))
                                             for d in ok)
    summary.update(_live_baseline(ok, median))
    waits = [d["frame_wait_s"] for d in decisions]
    summary["median_frame_wait_s"] = median(waits)
    summary["max_frame_wait_s"] = max(waits, default=None)
    return summary


def _goal(results: list[TaskResult], decisions: list[dict]) -> dict:
    """The demo's goal where speculation is meant to pay: over the decisions of the multi-step
    (two-goal) tasks, and over the answers of at least LONG_ANSWER_TOKENS words, the default
    mode's median decision time over cloud-only streaming's (replayed on one cloud, and live
    against the live baseline), and target passes per committed token."""
    from ..sim.tasks import Task
    multi_step = {n for n, r in enumerate(results, 1) if Task.parse(r.instruction).then}
    ok = [d for d in decisions if d["stats"].get("ok")]
    groups = {"multi_step_tasks": [d for d in ok if d["task"] in multi_step],
              "long_answers": [d for d in ok if len(d["answer"].split()) >= LONG_ANSWER_TOKENS],
              "all": ok}
    return {name: _against_streaming(group) for name, group in groups.items()}


def _against_streaming(group: list[dict]) -> dict:
    def ratio(mine, theirs):
        pairs = [(m, t) for m, t in zip(mine, theirs) if m is not None and t is not None]
        if not pairs:
            return None, None, None
        a, b = (statistics.median(v) for v in zip(*pairs))
        return a, b, a / b
    replay = ratio([d["replays"].get("speculative", {}).get("total_s") for d in group],
                   [d["replays"].get("stream", {}).get("total_s") for d in group])
    live = ratio([d["stats"]["total_s"] for d in group],
                 [d["baseline"].get("total_s") if d["baseline"].get("ok") else None
                  for d in group])
    passes = sum(d["stats"]["target_passes"] for d in group)
    tokens = sum(d["stats"]["tokens"] for d in group)
    found = {"decisions": len(group), "passes_per_token": passes / tokens if tokens else None}
    for name, (mine, theirs, over) in (("replay", replay), ("live", live)):
        found[name] = {"median_s": mine, "streaming_median_s": theirs, "over_streaming": over,
                       "met": None if over is None else over <= GOAL_OVER_STREAMING}
    found["passes_met"] = (None if found["passes_per_token"] is None
                           else found["passes_per_token"] <= GOAL_PASSES_PER_TOKEN)
    return found


def goal(summary: dict) -> str:
    """The goal's headline: default mode over cloud-only streaming where plans are long."""
    def part(name: str, g: dict) -> str:
        cells = []
        for where in ("replay", "live"):
            r = g[where]
            cells.append("—" if r["over_streaming"] is None else
                         f"{where} {_ms(r['median_s'])} vs {_ms(r['streaming_median_s'])} ms "
                         f"({r['over_streaming']:.2f}×, {'met' if r['met'] else 'not met'})")
        passes = ("—" if g["passes_per_token"] is None else f"{g['passes_per_token']:.2f} "
                  f"target passes/token ({'met' if g['passes_met'] else 'not met'})")
        return f"{name} ({g['decisions']} decisions): {', '.join(cells)}; {passes}"
    return (f"goal ≤ {GOAL_OVER_STREAMING}× cloud-only streaming and ≤ {GOAL_PASSES_PER_TOKEN} "
            f"passes/token, median decision time: "
            + "; ".join(part(name.replace("_", " "), g) for name, g in summary["goal"].items()))


def _live_baseline(ok: list[dict], median) -> dict:
    """Live vs live: the speculative decision over its live baseline, per decision."""
    pairs = [(d["stats"], d["baseline"]) for d in ok if d["baseline"].get("ok")]
    if not pairs:
        return {}
    found = dict(live_baseline_decisions=len(pairs),
                 live_baseline_same_answer=sum(bool(b["same_as_live"]) for _, b in pairs),
                 live_baseline_ran_first=sum(bool(b["ran_first"]) for _, b in pairs),
                 live_baseline_added_task_s=sum(b["added_task_s"] for _, b in pairs))
    for key in ("first_step_s", "total_s"):
        found[f"median_live_baseline_{key}"] = median(b.get(key) for _, b in pairs)
        found[f"median_live_over_baseline_{key}"] = median(
            s[key] / b[key] for s, b in pairs if s.get(key) and b.get(key))
    return found


def _split(decisions: list[dict], hops_summary: dict) -> dict:
    """Live vs paused vs replayed, medians per decision (ms): the software's part from the
    hop timeline, CPU contention as live minus paused on the same decision."""
    ok = [d for d in decisions if d["stats"].get("ok")]
    paired = [d for d in ok if d["paused"]["ok"]]
    median = timeline.median
    return {
        "decisions": len(ok), "paused_decisions": len(paired),
        "paused_same_answer": sum(d["paused"]["same_as_live"] for d in paired),
        "paused_same_frame": sum(d["paused"]["same_frame"] for d in paired),
        "live_total_ms": median(1000 * d["stats"]["total_s"] for d in ok),
        "paused_total_ms": median(1000 * d["paused"]["total_s"] for d in paired),
        "replay_total_ms": median(1000 * d["replays"]["speculative"]["total_s"]
                                  for d in ok if "speculative" in d["replays"]),
        "software_ms": median(d["timeline"]["software_ms"] for d in ok),
        "paused_software_ms": median(d["paused"]["timeline"]["software_ms"] for d in paired),
        "timeline_overhead_ms": median(d["timeline"]["overhead_ms"] for d in ok),
        "contention_ms": median(1000 * (d["stats"]["total_s"] - d["paused"]["total_s"])
                                for d in paired),
        "live_over_replay_ms": median(
            1000 * (d["stats"]["total_s"] - d["replays"]["speculative"]["total_s"])
            for d in ok if "speculative" in d["replays"]),
        "overhead_per_round_trip_ms": hops_summary["overhead"]["median_ms"],
        "overhead_per_round_trip_p95_ms": hops_summary["overhead"]["p95_ms"],
        "round_trips": hops_summary["round_trips"], "complete_round_trips":
            hops_summary["complete"]}


def split(summary: dict) -> str:
    """The live-vs-replay headline: where the live time went."""
    s = summary["split"]
    return (f"live vs replay (median per decision, ms): live {_ms1(s['live_total_ms'])}, "
            f"live with sim and camera paused {_ms1(s['paused_total_ms'])}, replayed "
            f"{_ms1(s['replay_total_ms'])}; live - replayed {_ms1(s['live_over_replay_ms'])}, "
            f"of it software {_ms1(s['software_ms'])} (paused {_ms1(s['paused_software_ms'])}"
            f"; timeline overhead {_ms1(s['timeline_overhead_ms'])}) and contention "
            f"(live - paused) {_ms1(s['contention_ms'])}; overhead per round trip "
            f"{_ms1(s['overhead_per_round_trip_ms'])} (p95 "
            f"{_ms1(s['overhead_per_round_trip_p95_ms'])}) over {s['complete_round_trips']}/"
            f"{s['round_trips']} complete round trips; paused twins: "
            f"{s['paused_same_answer']}/{s['paused_decisions']} same answers")


def _ms1(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def replayed(summary: dict) -> str:
    """Every mode and baseline replayed on one cloud: median first step / total per decision."""
    cells = [f"{mode} {_ms(summary.get(f'median_{mode}_first_step_s'))}/"
             f"{_ms(summary.get(f'median_{mode}_total_s'))}"
             for mode in tuple(MODES) + BASELINES]
    same = min(summary.get(f"{mode}_same_answer", 0) for mode in tuple(MODES) + BASELINES)
    return (f"replayed on one cloud (median per decision, first step/total ms): "
            f"{', '.join(cells)}; every mode reproduced at least {same}/"
            f"{summary['decisions_ok']} live answers")


def live_vs_live(summary: dict) -> str:
    """The live-vs-live headline of a run with the edge's live baseline."""
    if not summary.get("live_baseline_decisions"):
        return "live vs live: no decision has a live baseline"
    return (f"live vs live (median per decision, ms): first step "
            f"{_ms(summary['median_first_step_s'])} vs {_ms(summary['median_live_baseline_first_step_s'])} by cloud-only streaming "
            f"(ratio {summary['median_live_over_baseline_first_step_s']:.2f}), total "
            f"{_ms(summary['median_total_s'])} vs {_ms(summary['median_live_baseline_total_s'])} "
            f"(ratio {summary['median_live_over_baseline_total_s']:.2f}); "
            f"{summary['live_baseline_same_answer']}/{summary['live_baseline_decisions']} "
            f"answers token-identical; the baseline added ≤ "
            f"{summary['live_baseline_added_task_s']:.1f} s to the tasks "
            f"({summary['live_baseline_ran_first']} times it ran first); the edge's frame "
            f"of the new scene took up to {_ms(summary['max_frame_wait_s'])} ms to arrive")


def plot(results: list[TaskResult], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(5, max(1, len(results)))
    rows = math.ceil(len(results) / cols)
    fig = plt.figure(figsize=(2.6 * cols + 1, 2.6 * rows + 3.2))
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[2.6] * rows + [3.0])
    for n, result in enumerate(results):
        _room(fig.add_subplot(grid[n // cols, n % cols]), n + 1, result)
    _timeline(fig.add_subplot(grid[rows, :]), results)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _room(ax, number: int, result: TaskResult) -> None:
    from matplotlib.patches import Circle, Rectangle

    from ..sim.episode import demo_scene
    from ..sim.world import COLOURS
    scene = demo_scene(result.seed, result.task_mix)
    world = scene.world
    target = None if scene.task.verb == "stop" else scene.task.target(world)
    ax.add_patch(Rectangle((0, 0), world.width, world.depth, fill=False, lw=1))
    for o in world.obstacles:
        ax.add_patch(Rectangle((o.x0, o.y0), o.x1 - o.x0, o.y1 - o.y0, color="0.45"))
    for o in world.objects:
        colour = tuple(c / 255 for c in COLOURS[o.colour])
        shape = (Rectangle((o.x - o.radius, o.y - o.radius), 2 * o.radius, 2 * o.radius,
                           color=colour) if o.kind == "box" else Circle((o.x, o.y), o.radius,
                                                                       color=colour))
        ax.add_patch(shape)
        if o is target:
            ax.add_patch(Circle((o.x, o.y), o.radius + 0.3, fill=False, ls=":", lw=0.8))
        if o.kind == "cone":
            ax.plot(o.x, o.y, "w^", ms=3)
    xs = [p[1] for p in result.trajectory] or [result.start.x]
    ys = [p[2] for p in result.trajectory] or [result.start.y]
    ax.plot(xs, ys, "k-", lw=1)
    for pose, marker in ((result.start, "o"), (result.end, "s")):
        ax.plot(pose.x, pose.y, "k" + marker, ms=4)
        ax.arrow(pose.x, pose.y, 0.35 * math.cos(pose.yaw), 0.35 * math.sin(pose.yaw),
                 head_width=0.12, color="k", lw=0.8)
    ax.set_xlim(-0.2, world.width + 0.2)
    ax.set_ylim(-0.2, world.depth + 0.2)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"{number}. {result.instruction}\n"
                 f"{'succeeded' if result.succeeded else 'failed'}, "
                 f"{len(result.decisions)} decision(s)", fontsize=7,
                 color="tab:green" if result.succeeded else "tab:red")


def _timeline(ax, results: list[TaskResult]) -> None:
    series = {"first verified step": ("tab:blue", "o", lambda d: d.stats.get("first_step_s")),
              "decision (speculative, live)": ("tab:green", "s", lambda d: d.stats.get("total_s")),
              "cloud-only streaming (live baseline)": ("tab:purple", "^", lambda d: (
                  d.baseline.get("total_s") if d.baseline.get("ok") else None)),
              "same mode (replayed)": ("tab:olive", "d", lambda d: d.replays.get(
                  "speculative", {}).get("total_s")),
              "cloud-only streaming (replayed)": ("0.3", "x",
                                                  lambda d: d.replays.get("stream", {}).get("total_s")),
              "one request per token (replayed)": ("tab:red", "+", lambda d: d.replays.get(
                  "per_token", {}).get("total_s"))}
    for label, (colour, marker, value) in series.items():
        points = [(d.started_s, value(d)) for r in results for d in r.decisions
                  if d.stats.get("ok") and value(d) is not None]
        if points:
            ax.plot([t for t, _ in points], [1000 * v for _, v in points], marker,
                    color=colour, label=label, ls="none")
    for n, r in enumerate(results):
        if r.decisions:
            ax.axvspan(r.decisions[0].started_s, r.decisions[-1].ended_s,
                       color="tab:green" if r.succeeded else "tab:red", alpha=0.08)
    ax.set_xlabel("time in the run (s); shaded: a task (green succeeded, red failed)")
    ax.set_ylabel("decode time (ms)")
    ax.set_title("latency of each decision")
    ax.legend(fontsize=7, loc="upper left")


def plot_hops(decisions: list[dict], split: dict, rtt_ms: float, path: Path) -> None:
    """Per decision, its live time stacked by where it went (timeline.stacked); beside it,
    live, paused, replayed and the software's part per decision."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [d for d in decisions if d["stats"].get("ok")]
    fig, (bars, points) = plt.subplots(2, 1, figsize=(max(8.0, 0.22 * len(ok) + 4) + 3, 9),
                                       height_ratios=[3, 2])
    colours = plt.get_cmap("tab20").colors
    bottoms = [0.0] * len(ok)
    stacks = [timeline.stacked(d["timeline"], d["stats"], rtt_ms) for d in ok]
    for i, part in enumerate(stacks[0] if stacks else ()):
        heights = [max(0.0, s[part]) for s in stacks]
        bars.bar(range(len(ok)), heights, bottom=bottoms, color=colours[i % len(colours)],
                 label=part, width=0.8)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    bars.set_ylabel("ms")
    bars.set_title(f"where each decision's live time went (hop timeline; {rtt_ms:g} ms "
                   f"emulated round trip)")
    bars.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    labels = [f"{d['task']}.{d['decision']}" for d in ok]
    series = {"live": lambda d: 1000 * d["stats"]["total_s"],
              "live, sim and camera paused": lambda d: (1000 * d["paused"]["total_s"]
                                                        if d["paused"]["ok"] else None),
              "replayed (same mode)": lambda d: (
                  1000 * d["replays"]["speculative"]["total_s"]
                  if "speculative" in d["replays"] else None),
              "software (timeline)": lambda d: d["timeline"]["software_ms"]}
    for (label, value), marker in zip(series.items(), "osd^"):
        ys = [value(d) for d in ok]
        points.plot(range(len(ok)), [math.nan if y is None else y for y in ys], marker,
                    ls="none", label=f"{label}: median {_ms1(timeline.median(ys))} ms")
    for axis in (bars, points):
        axis.set_xticks(range(len(ok)), labels, fontsize=6, rotation=90)
        axis.set_xlim(-0.6, len(ok) - 0.4)
    points.set_xlabel("task.decision")
    points.set_ylabel("ms")
    points.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    points.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
