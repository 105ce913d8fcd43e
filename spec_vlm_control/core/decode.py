"""One request end to end: an edge session and a cloud verifier joined by two links.

The driver is a discrete-event loop in virtual time. Each side owns a clock; when a side
acts (receives the messages that have arrived, or does one unit of work) its clock starts at
the current event time and advances by what the work cost: measured wall time
(MeasuredClock: benchmarks, so compute runs one side at a time and cannot disturb the other)
or a fixed cost model (ManualClock + CostedAdapter: tests, exactly reproducible). Messages
arrive when the link says. The ROS nodes run the same EdgeSession and CloudVerifier in real
time and only replace this loop and the links.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
from dataclasses import dataclass, field
from typing import Callable, Optional

from .clock import CostedAdapter, ManualClock, MeasuredClock
from .cloud import CloudConfig, CloudVerifier
from .edge import EdgeConfig, EdgeSession
from .link import InstantLink
from .metrics import RequestStats
from .models.base import DecoderAdapter, Prompt
from .protocol import DecodeRequest, DecodingParams, Handshake
from .target_pass import TargetPass


@dataclass
class Costs:
    """Cost model of ManualClock runs, in virtual seconds."""

    target_pass: float = 0.010
    target_token: float = 0.0005
    draft_pass: float = 0.001
    draft_token: float = 0.0


@dataclass
class Outcome:
    tokens: list[int]
    stats: RequestStats
    edge: EdgeSession
    cloud: CloudVerifier
    cloud_counts: dict = field(default_factory=dict)


def run_request(edge: EdgeSession, cloud: CloudVerifier, uplink=None, downlink=None,
                max_events: int = 1_000_000, start: float = 0.0) -> Outcome:
    return run_requests([edge], cloud, uplink, downlink, max_events, start)[0]


def run_requests(edges: list[EdgeSession], cloud: CloudVerifier, uplink=None, downlink=None,
                 max_events: int = 1_000_000, start: float = 0.0) -> list[Outcome]:
    """Run edge sessions (robots) against one cloud until every edge is done. All edges
    share the uplink; cloud messages reach the edge they name. The edges start at `start`
    (a cloud serving request after request: its clock's now, so its time never runs
    back)."""
    uplink = uplink or InstantLink()
    downlink = downlink or InstantLink()
    names = [f"edge{i}" for i in range(len(edges))]
    actors = dict(zip(names, edges), cloud=cloud)
    by_key = {(e.request.robot_id, e.request.request_id): n for n, e in zip(names, edges)}
    inbox = {name: [] for name in actors}
    free = {name: start for name in actors}
    order = itertools.count()
    in_flight: list[tuple[float, float]] = []

    def poster(link, clock, dest=None):
        def post(message) -> None:
            sent = clock.now()
            to = dest or by_key.get((message.robot_id, message.request_id))
            for arrival in link.transmit(message, sent):
                if to is not None:
                    heapq.heappush(inbox[to], (arrival, next(order), message))
                in_flight.append((sent, arrival))
        return post

    cloud.send = poster(downlink, cloud.clock)
    for edge in edges:
        edge.send = poster(uplink, edge.clock, "cloud")
        edge.clock.start(start)
        edge.start()
    for name in names:
        free[name] = actors[name].clock.now()

    for _ in range(max_events):
        if all(edge.done for edge in edges):
            break
        events = []
        for name, actor in actors.items():
            if inbox[name]:
                events.append((max(inbox[name][0][0], free[name]), 0, name, "receive"))
            if actor.has_work():
                events.append((free[name], 1, name, "work"))
            elif name != "cloud" and not actor.done:
                events.append((max(free[name], actor.wake_time()), 1, name, "work"))
        t, _, name, kind = min(events)
        actor = actors[name]
        actor.clock.start(t)
        if kind == "receive":
            while inbox[name] and inbox[name][0][0] <= t:
                actor.receive(heapq.heappop(inbox[name])[2])
        else:
            actor.work()
        free[name] = actor.clock.now()
    else:
        raise RuntimeError("decode loop did not finish (max_events)")
    while inbox["cloud"]:                          # let a Cancel reach the cloud
        cloud.receive(heapq.heappop(inbox["cloud"])[2])
    return [_outcome(edge, cloud, in_flight) for edge in edges]


def _outcome(edge: EdgeSession, cloud: CloudVerifier, in_flight) -> Outcome:
    stats = edge.stats()
    key = (edge.request.robot_id, edge.request.request_id)
    session = cloud.sessions.get(key)
    counts = dict(session.counts) if session is not None else {}
    stats.target_passes = counts.get("passes", 0)
    stats.target_passes_per_token = stats.target_passes / max(1, stats.tokens)
    verify = session.busy if session is not None else []
    end = edge.finished_at if edge.finished_at is not None else edge.clock.now()
    split = split_time(edge.started, end, [verify, edge.tally.draft_intervals, in_flight])
    stats.verify_s, stats.draft_s, stats.link_s, stats.idle_s = split
    return Outcome(edge.tokens, stats, edge, cloud, counts)


def split_time(start: float, end: float, layers: list[list[tuple[float, float]]]) -> list[float]:
    """Split [start, end] by the first layer covering each instant (verify, then draft, then
    link); the rest is idle. Returns one duration per layer plus idle."""
    merged = [_merge(iv) for iv in layers]
    cuts = sorted({start, end, *(x for iv in merged for a, b in iv for x in (a, b)
                                 if start < x < end)})
    totals = [0.0] * (len(layers) + 1)
    for a, b in zip(cuts, cuts[1:]):
        mid = (a + b) / 2
        index = next((i for i, iv in enumerate(merged) if _covers(iv, mid)), len(layers))
        totals[index] += b - a
    return totals


def _merge(intervals):
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _covers(merged, x: float) -> bool:
    i = bisect.bisect_right([a for a, _ in merged], x) - 1
    return i >= 0 and merged[i][0] <= x < merged[i][1]


def build(target: DecoderAdapter, draft: DecoderAdapter, prompt: Prompt,
          params: DecodingParams, *, costs: Optional[Costs] = Costs(), exit_layers=(),
          exit_adapters: Optional[dict] = None, candidate_top: Optional[int] = None,
          edge_config: EdgeConfig = EdgeConfig(), cloud_config: Optional[CloudConfig] = None,
          request_id: int = 1, robot_id: str = "go2", on_tokens=None,
          action_complete: Optional[Callable] = None, rule=None,
          cloud: Optional[CloudVerifier] = None, instruction: str = "",
          image_data: bytes = b"", image_format: str = "") -> tuple[EdgeSession, CloudVerifier]:
    """Both sides around a target/draft pair. costs=None measures real compute time
    (MeasuredClock); a Costs model makes runs exactly reproducible. Pass `cloud` to add
    another edge session to an existing cloud (the request then carries `instruction` and
    the image, for a cloud that builds each request's prompt itself)."""
    if costs is None:
        edge_clock = MeasuredClock()
        cloud_clock = cloud.clock if cloud else MeasuredClock()
    else:
        edge_clock = ManualClock()
        cloud_clock = cloud.clock if cloud else ManualClock()
        draft = CostedAdapter(draft, edge_clock, costs.draft_pass, costs.draft_token)
    if cloud is None:
        if costs is not None:
            target = CostedAdapter(target, cloud_clock, costs.target_pass, costs.target_token)
        target_pass = TargetPass.with_layers(target, exit_layers, exit_adapters, candidate_top)
        cloud_config = cloud_config or CloudConfig(tokenizer_hash=target.fingerprint())
        cloud = CloudVerifier(target, lambda request: prompt, cloud_clock, config=cloud_config,
                              target_pass=target_pass, **({"rule": rule} if rule else {}))
    request = DecodeRequest(robot_id, request_id, instruction, image_data, image_format,
                            params=params,
                            handshake=Handshake(tokenizer_hash=draft.fingerprint()))
    edge = EdgeSession(draft, prompt, request, edge_clock, config=edge_config,
                       on_tokens=on_tokens, action_complete=action_complete)
    return edge, cloud


def mode_setup(mode: str, k: int, max_new_tokens: int) -> tuple[DecodingParams, EdgeConfig]:
    """(DecodingParams, EdgeConfig) of a decoding mode or a cloud-only baseline: `stream` is
    cloud-led decoding with no drafts, `per_token` asks for one token per round trip."""
    from .protocol import MODES as MODE_IDS
    config = EdgeConfig()
    if mode == "stream":
        mode_id, config = MODE_IDS["cloud_led"], EdgeConfig(drafting=False)
    elif mode == "per_token":
        mode_id, k = MODE_IDS["plain"], 0
    else:
        mode_id = MODE_IDS[mode]
    return DecodingParams(mode=mode_id, block_size=k, max_new_tokens=max_new_tokens), config


def decode(target: DecoderAdapter, draft: DecoderAdapter, prompt: Prompt,
           params: DecodingParams, *, uplink=None, downlink=None, **options) -> Outcome:
    """One request end to end (see `build` for the options)."""
    return run_request(*build(target, draft, prompt, params, **options), uplink, downlink)
