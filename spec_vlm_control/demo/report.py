"""The demo's report: a line per task while it runs, then a table per decision, demo.json
(config, decisions, tasks, summary), the frames the edge decided on, and demo.png (each
task's trajectory in its room, and a latency timeline)."""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path

from ..sim.episode import TaskResult
from .replay import BASELINES, MODES

TRAJECTORY_HZ = 10.0     # odometry kept in demo.json (the bag has all of it)


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


def write(out: Path, results: list[TaskResult], timing: dict, config: dict) -> dict:
    frames = out / "frames"
    frames.mkdir(exist_ok=True)
    decisions, tasks = [], []
    for n, result in enumerate(results, 1):
        first = len(decisions)
        for i, d in enumerate(result.decisions, 1):
            row = {k: v for k, v in asdict(d).items() if k != "jpeg"}
            row.update(task=n, decision=i, says_stop=d.says_stop)
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
    (out / "demo.json").write_text(json.dumps(dict(config=config, timing=timing,
                                                   summary=summary, tasks=tasks,
                                                   decisions=decisions), indent=1))
    plot(results, out / "demo.png")
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

    from ..sim.scenes import SceneSampler
    from ..sim.world import COLOURS
    scene = SceneSampler(seed=result.seed).sample()
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
