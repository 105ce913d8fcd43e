"""Where the time of a live round trip goes: a hop timeline from stamps the processes take.

Each process of the graph (edge, robot-side bridge, cloud-side bridge, cloud) records when a
protocol message passes one of its points, keyed by (robot_id, request_id, round, kind), on
`time.monotonic_ns()`; nothing travels on the wire. A reader merges the processes' files
into one record per round trip: a draft block from the edge's send to the edge's receipt
of its final verdict.

Clocks. On one host every process reads the same CLOCK_MONOTONIC, so every hop is
meaningful. Across hosts only intervals between two points of the same site are: the robot
site (edge, robot bridge) and the cloud site (cloud bridge, cloud). The overhead of a round
trip (edge interval - emulated round trip - the cloud's pass) is built from such intervals
and holds across hosts too; the zenoh hops between the bridges do not.

Off unless the environment variable SPEC_VLM_HOPS names a folder: each process then appends
JSON lines to <folder>/<site>-<pid>.jsonl (line-buffered, so a killed process loses at most
the line it was writing). Off, recording is one attribute test.

Pure Python (no ROS): the nodes pass their messages in, core dataclasses or ROS messages
alike (same type and field names).
"""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

ENV = "SPEC_VLM_HOPS"
SITES = {"edge": "robot", "robot_bridge": "robot", "cloud_bridge": "cloud", "cloud": "cloud"}
STAGE_FINAL = 1                 # Verdict.STAGE_FINAL (msg/Verdict.msg)
KINDS = {"DecodeRequest": "request", "DraftBlock": "block", "CommittedTokens": "committed",
         "Cancel": "cancel", "DecodeError": "error"}

# A round trip's points in the order a block and its final verdict pass them: (kind, hop).
UP = ("edge.send", "robot_bridge.in", "robot_bridge.out", "cloud_bridge.in",
      "cloud_bridge.out", "cloud.receive")
DOWN = ("cloud.ready", "cloud.pass_start", "cloud.pass_end", "cloud.send", "cloud_bridge.in",
        "cloud_bridge.out", "robot_bridge.in", "robot_bridge.out", "edge.receive")
POINTS = tuple(("block", hop) for hop in UP) + tuple(("final", hop) for hop in DOWN)
# cloud.ready is derived, not recorded: when the block was received or, if later, when the
# cloud's worker finished the unit of work it was busy with (cloud.free, recorded with the
# verdict), e.g. the prefill of the block's own request or another robot's pass.
# The interval between consecutive points, named for what happens in it.
SEGMENTS = ("edge -> robot bridge (convert, DDS)", "robot bridge up (+ emulated one way)",
            "zenoh up", "cloud bridge up", "cloud bridge -> cloud (DDS)",
            "cloud queue (behind other work)", "cloud wake-up", "pass", "cloud send (convert)",
            "cloud -> cloud bridge (DDS)", "cloud bridge down (+ emulated one way)",
            "zenoh down", "robot bridge down", "robot bridge -> edge (DDS)")
EMULATED = ("robot bridge up (+ emulated one way)", "cloud bridge down (+ emulated one way)")
ACROSS_SITES = ("zenoh up", "zenoh down")
QUEUE = "cloud queue (behind other work)"
# Each of the cloud's units of work that a request took part in (its prompt chunks, the
# steps it commits by itself in cloud_led and stream, the passes over its blocks), recorded
# with its DecodeRequest once the request has ended (again if an ending message is resent):
# cloud-led decoding has no round trip per pass, so these are how its timeline knows what
# the cloud spent on it.
BUSY = (("request", "cloud.busy_start"), ("request", "cloud.busy_end"))


def kind_of(msg) -> str:
    name = type(msg).__name__
    if name == "Verdict":
        return "final" if msg.stage == STAGE_FINAL else "early"
    return KINDS.get(name, name)


class HopLog:
    """One process's hop records; `record` is a no-op unless the log is enabled."""

    def __init__(self, site: str, folder: Optional[str | Path] = None):
        if site not in SITES:
            raise ValueError(f"site must be one of {', '.join(SITES)}, not {site!r}")
        self.site = site
        self.enabled = bool(folder)
        if self.enabled:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.path = Path(folder) / f"{site}-{os.getpid()}.jsonl"
            self._file = open(self.path, "a", buffering=1)
            self._lock = threading.Lock()

    def record(self, point: str, msg, t_ns: Optional[int] = None) -> None:
        """`msg` passes `point` of this site now (or at `t_ns`, monotonic ns)."""
        if not self.enabled:
            return
        t = time.monotonic_ns() if t_ns is None else t_ns
        line = json.dumps({"hop": f"{self.site}.{point}", "robot": msg.robot_id,
                           "request": int(msg.request_id), "round": int(getattr(msg, "round", 0)),
                           "kind": kind_of(msg), "t_ns": t})
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        if self.enabled:
            self._file.close()


def open_log(site: str) -> HopLog:
    """This process's log for `site`: enabled when SPEC_VLM_HOPS names a folder."""
    return HopLog(site, os.environ.get(ENV) or None)


# -- reading ------------------------------------------------------------------------------
@dataclass
class RoundTrip:
    """One block and its final verdict: the first time each point saw them (a resent
    block or a duplicated verdict keeps its first passage)."""
    robot: str
    request: int
    round: int
    times: dict = field(default_factory=dict)            # (kind, hop) -> t_ns

    @property
    def missing(self) -> list[str]:
        return [f"{kind} {hop}" for kind, hop in POINTS if (kind, hop) not in self.times]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def total_ns(self) -> Optional[int]:
        """Edge send of the block to edge receipt of its final verdict."""
        first, last = self.times.get(POINTS[0]), self.times.get(POINTS[-1])
        return None if first is None or last is None else last - first

    def segments_ns(self) -> dict[str, int]:
        """Each segment between two consecutive points, where both were recorded."""
        return {name: self.times[b] - self.times[a]
                for name, a, b in zip(SEGMENTS, POINTS, POINTS[1:])
                if a in self.times and b in self.times}

    def pass_ns(self) -> Optional[int]:
        start, end = self.times.get(("final", "cloud.pass_start")), \
            self.times.get(("final", "cloud.pass_end"))
        return None if start is None or end is None else end - start

    def queued_ns(self) -> Optional[int]:
        """How long the block waited for the cloud's worker to finish other work."""
        return self.segments_ns().get(QUEUE)

    def overhead_ns(self, emulated_rtt_ns: int) -> Optional[int]:
        """Round trip - emulated round trip - the cloud's pass - its wait behind the cloud's
        other work (decoding, not overhead): what the software adds."""
        total, passed, queued = self.total_ns, self.pass_ns(), self.queued_ns()
        if total is None or passed is None or queued is None:
            return None
        return total - emulated_rtt_ns - passed - queued


def read_events(folder: str | Path) -> list[dict]:
    """Every record of every process that wrote into `folder` (a torn last line skipped)."""
    events = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def round_trips(events: Iterable[dict]) -> list[RoundTrip]:
    """The events merged into one RoundTrip per (robot, request, round) that has a block,
    in the order of the blocks' sends."""
    trips: dict[tuple, RoundTrip] = {}
    wanted = set(POINTS) | {("final", "cloud.free")}
    for e in sorted(events, key=lambda e: e["t_ns"]):
        point = (e["kind"], e["hop"])
        if point not in wanted:
            continue
        key = (e["robot"], e["request"], e["round"])
        trip = trips.get(key)
        if trip is None:
            trip = trips[key] = RoundTrip(*key)
        trip.times.setdefault(point, e["t_ns"])
    for trip in trips.values():
        received = trip.times.get(("block", "cloud.receive"))
        free = trip.times.get(("final", "cloud.free"))
        if received is not None and free is not None:
            trip.times[("final", "cloud.ready")] = max(received, free)
    started = [t for t in trips.values() if ("block", "edge.send") in t.times]
    return sorted(started, key=lambda t: t.times[("block", "edge.send")])


def busy_ns(events: Iterable[dict]) -> dict[tuple[str, int], int]:
    """Per (robot, request): the summed length of the cloud's units of work it took part in,
    each unit counted once (units run one at a time: a unit's start and end follow each
    other, a unit recorded twice has the same two times) and only up to the cloud's last
    message of the request: what a unit does after that (other sessions' rows, its
    bookkeeping, its thread waiting for a core) is off the request's path."""
    starts: dict[tuple, list[int]] = {}
    units: dict[tuple, set[tuple[int, int]]] = {}
    last_send: dict[tuple, int] = {}
    for e in sorted(events, key=lambda e: e["t_ns"]):
        point, key = (e["kind"], e["hop"]), (e["robot"], e["request"])
        if point == BUSY[0]:
            starts.setdefault(key, []).append(e["t_ns"])
        elif point == BUSY[1] and starts.get(key):
            units.setdefault(key, set()).add((starts[key].pop(0), e["t_ns"]))
        elif e["hop"] == "cloud.send":
            last_send[key] = e["t_ns"]
    return {key: sum(max(0, min(end, last_send.get(key, end)) - start) for start, end in found)
            for key, found in units.items()}


def _quantiles_ms(values_ns: list[int]) -> dict:
    if not values_ns:
        return {"n": 0, "median_ms": None, "p95_ms": None}
    ms = sorted(v / 1e6 for v in values_ns)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 4),
            "p95_ms": round(p95, 4)}


def summarize(trips: list[RoundTrip], emulated_rtt_ms: float) -> dict:
    """Overhead per round trip and each segment's median and p95 over the complete round
    trips; the emulated one-way latency is taken out of the two bridge segments that hold it."""
    complete = [t for t in trips if t.complete]
    emulated_ns = int(round(emulated_rtt_ms * 1e6))
    segments = {}
    for name in SEGMENTS:
        values = [t.segments_ns()[name] - (emulated_ns // 2 if name in EMULATED else 0)
                  for t in complete]
        segments[name] = dict(_quantiles_ms(values), across_sites=name in ACROSS_SITES,
                              emulated_removed_ms=emulated_rtt_ms / 2 if name in EMULATED
                              else 0.0)
    missing: dict[str, int] = {}
    for t in trips:
        for point in t.missing:
            missing[point] = missing.get(point, 0) + 1
    return {"round_trips": len(trips), "complete": len(complete),
            "emulated_rtt_ms": emulated_rtt_ms,
            "overhead": _quantiles_ms([t.overhead_ns(emulated_ns) for t in complete]),
            "round_trip": _quantiles_ms([t.total_ns for t in complete]),
            "pass": _quantiles_ms([t.pass_ns() for t in complete]),
            "queued": _quantiles_ms([t.queued_ns() for t in complete]),
            "segments": segments, "missing_points": missing}
