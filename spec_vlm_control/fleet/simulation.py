"""One fleet run: N robots, closed loop, against one CloudVerifier, in virtual time.

Each robot decides, thinks (a fixed `think_s`, 1.5 s by default, standing for executing its
plan; 0 = back to back), then decides again. Its first decision starts at a seeded offset in
[0, think_s) that depends only on the seed, the robot and N, so every variant sees the same
arrivals; that first decision is the robot's warm-up and is not measured. A decision is the
real EdgeSession of its mode (core/edge.py with core/edge_modes.py), driven as
core/decode.py drives one, and all robots share one CloudVerifier running real target
passes. Clocks as in core/decode.py: the cloud's is a MeasuredClock (each pass advances
virtual time by what it took: one process, one thread; by default its CPU time, which other
processes on a shared machine do not stretch as they stretch wall time), each robot's a ManualClock charged
by CostedAdapter at the draft's measured cost, and the LinkEmulator adds half the round trip
each way. The loop always acts on the earliest pending event: messages arriving (taken at
the actor's next free instant), a unit of work, a timer, or a robot's next decision.

Latency: from the robot sending its request to its last verified token, queueing included.
"""
from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from dataclasses import dataclass, fields
from typing import Callable, Optional

import numpy as np

from ..core.batch import PassRecord
from ..core.clock import CostedAdapter, ManualClock, MeasuredClock
from ..core.cloud import CloudConfig, CloudVerifier
from ..core.decode import mode_setup
from ..core.edge import EdgeSession
from ..core.link import LinkEmulator
from ..core.target_pass import TargetPass
from .workload import Workload

THINK_S = 1.5
RTT_S = 0.050
SPECULATIVE_MODES = ("plain", "preemptive", "pipelined", "cloud_led")
STREAM = "stream"             # core/decode.py's baseline: cloud-led decoding with no drafts
# Room for the whole fleet, so admission never refuses a robot (the same for every variant)
FLEET_LIMITS = dict(max_sessions=256, max_requests_per_s=1000.0, request_burst=1000)


@dataclass(frozen=True)
class Variant:
    mode: str                 # a decoding mode, or STREAM
    batched: bool             # False: one session per target pass (max_batch_sessions = 1)

    @property
    def name(self) -> str:
        return f"{self.mode} {'batched' if self.batched else 'one-per-pass'}"


def variants() -> list[Variant]:
    """Each speculative mode batched and one session per pass, then batched streaming."""
    return [Variant(m, b) for m in SPECULATIVE_MODES for b in (True, False)] + \
        [Variant(STREAM, True)]


def batching_available() -> bool:
    """Whether this CloudVerifier batches sessions (CloudConfig.max_batch_sessions)."""
    return "max_batch_sessions" in {f.name for f in fields(CloudConfig)}


def cloud_config(tokenizer_hash: str, batched: bool,
                 batch_sessions: Optional[int] = None) -> CloudConfig:
    """Every variant's cloud: CloudConfig's defaults (token budget, max_wait_ms, ...) with
    FLEET_LIMITS; one session per pass unless batched (batch_sessions None = the default)."""
    values = dict(FLEET_LIMITS, tokenizer_hash=tokenizer_hash)
    if batching_available():
        values["max_batch_sessions"] = (batch_sessions or CloudConfig.max_batch_sessions) \
            if batched else 1
    return CloudConfig(**values)


@dataclass
class Decision:
    robot: int
    index: int                # 0 = the robot's warm-up
    scene: int
    sent: float
    done: float
    tokens: list[int]
    error: str

    @property
    def latency(self) -> float:
        return self.done - self.sent


@dataclass
class FleetRun:
    variant: Variant
    robots: int
    think_s: float
    decisions: list[Decision]
    passes: list[PassRecord]                  # every target pass of the cloud

    @property
    def measured(self) -> list[Decision]:
        return [d for d in self.decisions if d.index > 0]

    def summary(self) -> dict:
        """Latency of the measured decisions; rates over the window from the first measured
        request to the last measured answer. Sessions per pass and padding (the fraction of
        the positions computed, rows x longest row, that were padding) over its passes
        (prompt chunks share them)."""
        measured = self.measured
        ok = [d.latency for d in measured if not d.error]
        start = min(d.sent for d in measured)
        end = max(d.done for d in measured)
        window = max(end - start, 1e-9)
        busy = sum(max(0.0, min(p.end, end) - max(p.start, start)) for p in self.passes)
        passes = [p for p in self.passes if start <= p.start < end]
        fed = [p for p in passes if p.positions]
        computed = sum(p.rows * p.width for p in fed)
        answered = [d for d in self.decisions if start < d.done <= end and not d.error]
        pct = (lambda q: float(np.percentile(ok, q))) if ok else (lambda q: math.inf)
        return dict(robots=self.robots, decisions=len(measured), failed=len(measured) - len(ok),
                    p50_s=pct(50), p99_s=pct(99), mean_s=float(np.mean(ok)) if ok else math.inf,
                    window_s=window, target_passes_per_s=len(passes) / window,
                    decisions_per_s=len(answered) / window,
                    verified_tokens_per_s=sum(len(d.tokens) for d in answered) / window,
                    busy_fraction=busy / window,
                    sessions_per_pass=float(np.mean([p.rows for p in fed])) if fed else 0.0,
                    padding_fraction=1.0 - sum(p.positions for p in fed) / computed
                    if computed else 0.0)


class Robot:
    """One robot: a ManualClock, its draft charged to it, at most one decision at a time."""

    def __init__(self, index: int, workload: Workload, first_start: float):
        self.index = index
        self.clock = ManualClock()
        cost = workload.draft_cost
        self.draft = CostedAdapter(workload.draft.adapter, self.clock, cost.per_pass,
                                   cost.per_position)
        self.session: Optional[EdgeSession] = None
        self.decided = 0                        # decisions started
        self.next_start: Optional[float] = first_start
        self.inbox: list = []
        self.free = 0.0

    def next_event(self) -> Optional[tuple[float, int, str]]:
        s = self.session
        if s is None:
            return None if self.next_start is None else (max(self.next_start, self.free), 2,
                                                         "start")
        work = (self.free if s.has_work() else max(self.free, s.wake_time()), 1, "work")
        if self.inbox:
            return min(work, (max(self.inbox[0][0], self.free), 0, "receive"))
        return work


def simulate(workload: Workload, variant: Variant, robots: int, decisions: int,
             think_s: float = THINK_S, rtt_s: float = RTT_S, seed: int = 0,
             batch_sessions: Optional[int] = None, timer=time.process_time,
             on_decision: Optional[Callable[[Decision], None]] = None,
             max_events: int = 10_000_000) -> FleetRun:
    """`robots` robots until `decisions` measured decisions (after one warm-up decision per
    robot) have been made. `timer` measures the cloud's work (see MeasuredClock)."""
    target = workload.target.adapter
    params, edge_config = mode_setup(variant.mode, workload.block_size,
                                     workload.max_new_tokens)
    cloud = CloudVerifier(
        target, workload.cloud_prompt, MeasuredClock(timer),
        config=cloud_config(target.fingerprint(), variant.batched, batch_sessions),
        target_pass=TargetPass.with_layers(target, workload.exit_layers,
                                           workload.exit_adapters))
    spread = think_s if think_s > 0 else rtt_s
    rng = random.Random(f"{seed}:{robots}")
    fleet = [Robot(i, workload, rng.random() * spread) for i in range(robots)]
    by_name = {f"robot{i}": r for i, r in enumerate(fleet)}
    cloud_inbox: list = []
    cloud_free = 0.0
    order = itertools.count()
    uplink, downlink = LinkEmulator(rtt_s / 2, seed=1), LinkEmulator(rtt_s / 2, seed=2)

    def poster(link, clock, inbox_of):
        def post(message) -> None:
            inbox = inbox_of(message)
            for arrival in link.transmit(message, clock.now()):
                if inbox is not None:
                    heapq.heappush(inbox, (arrival, next(order), message))
        return post

    cloud.send = poster(downlink, cloud.clock,
                        lambda m: getattr(by_name.get(m.robot_id), "inbox", None))
    to_cloud = lambda m: cloud_inbox  # noqa: E731
    run = FleetRun(variant, robots, think_s, [], [])
    left = decisions                                  # measured decisions still to start

    for _ in range(max_events):
        events = []
        if cloud_inbox:
            events.append((max(cloud_inbox[0][0], cloud_free), 0, -1, "receive"))
        if cloud.has_work():
            events.append((cloud_free, 1, -1, "work"))
        elif cloud.wake_time() > cloud_free and cloud.wake_time() < math.inf:
            events.append((cloud.wake_time(), 1, -1, "wake"))
        live = False
        for robot in fleet:
            event = robot.next_event()
            if event is not None:
                live = True
                events.append((event[0], event[1], robot.index, event[2]))
        if not live:
            break
        t, _, who, kind = min(events)
        if who < 0:
            cloud.clock.start(t)
            if kind == "receive":
                while cloud_inbox and cloud_inbox[0][0] <= t:
                    cloud.receive(heapq.heappop(cloud_inbox)[2])
            else:
                logged = cloud.log.total
                cloud.work()
                if cloud.log.total > logged:
                    run.passes.append(cloud.log.passes[-1])
            cloud_free = cloud.clock.now()
            continue
        robot = fleet[who]
        robot.clock.start(t)
        if kind == "start":
            if robot.decided and not left:
                robot.next_start = None                # the run has its decisions
                continue
            left -= robot.decided > 0
            request = workload.request(robot.index, robot.decided, params)
            robot.session = EdgeSession(robot.draft, workload.edge_prompt(request), request,
                                        robot.clock, send=poster(uplink, robot.clock, to_cloud),
                                        config=edge_config)
            robot.decided += 1
            robot.session.start()
        elif kind == "receive":
            while robot.inbox and robot.inbox[0][0] <= t:
                robot.session.receive(heapq.heappop(robot.inbox)[2])
        else:
            robot.session.work()
        robot.free = robot.clock.now()
        session = robot.session
        if session.done:
            decision = Decision(robot.index, robot.decided - 1,
                                workload.scene_of(robot.index, robot.decided - 1),
                                session.started, session.finished_at, list(session.tokens),
                                session.error)
            run.decisions.append(decision)
            robot.session = None
            robot.next_start = session.finished_at + think_s
            if on_decision is not None:
                on_decision(decision)
    else:
        raise RuntimeError("fleet simulation did not finish (max_events)")
    return run
