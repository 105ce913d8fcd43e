"""Where a demo decision's live time goes: its hop timeline (hops.py) and the split of
live time into what the decoding costs and what the software adds.

The demo's node processes record the timeline (SPEC_VLM_HOPS); each decision gets the round
trips of its own request (a block and its final verdict), each segment in ms. Per decision:

    software = live total (RequestStats.total_s) - edge drafting (draft_s)
               - round trips x emulated round trip - the cloud's passes - their queue

that is, the time no model computes and no emulated link delays. With one block in flight
at a time (plain, early_exit) it is exact; where drafting overlaps the round trips
(preemptive, pipelined) it counts the overlap out twice. In cloud_led the cloud never waits
for the edge: the request goes up, the cloud decodes by itself (taking the edge's blocks
where they help) and the last commit comes down, while the edge drafts beside it. There

    software = live total - one emulated round trip - the cloud's busy time on the request

where the busy time sums the cloud's units of work the request took part in (hops.BUSY:
the vision tower, its prompt chunks, steps and blocks), each up to the cloud's last message
of the request (hops.busy_ns). With one robot (the demo) nothing
else queues on the cloud. `overhead` sums the round trips' own overheads
(hops.RoundTrip.overhead_ns): the part of `software` between the edge's send of a block and
its receipt of the verdict.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import hops
from ..core.protocol import MODE_NAMES

EMULATED_LINK = "emulated link"


@dataclass
class RequestHops:
    """What the hop records say of one request: its round trips, and the cloud's busy time
    on it (None where the cloud recorded none)."""
    trips: list[hops.RoundTrip] = field(default_factory=list)
    busy_ns: Optional[int] = None


def by_request(folder: Path) -> dict[int, RequestHops]:
    """The merged round trips and busy time of every request recorded in `folder` (one
    robot)."""
    events = hops.read_events(folder)
    found: dict[int, RequestHops] = {}
    for trip in hops.round_trips(events):
        found.setdefault(trip.request, RequestHops()).trips.append(trip)
    for (_, request), busy in hops.busy_ns(events).items():
        found.setdefault(request, RequestHops()).busy_ns = busy
    return found


def _ms(ns) -> float | None:
    return None if ns is None else round(ns / 1e6, 4)


def decision(recorded: Optional[RequestHops], stats: dict, rtt_ms: float) -> dict:
    """One decision's round trips (complete ones with every segment) and its split."""
    recorded = recorded or RequestHops()
    trips = recorded.trips
    emulated_ns = round(rtt_ms * 1e6)
    complete = [t for t in trips if t.complete]
    rows = [{"round": t.round, "missing": t.missing, "total_ms": _ms(t.total_ns),
             "segments_ms": {k: _ms(v) for k, v in t.segments_ns().items()},
             "overhead_ms": _ms(t.overhead_ns(emulated_ns)) if t.complete else None}
            for t in trips]
    passed = sum(t.pass_ns() for t in complete) / 1e6
    queued = sum(t.queued_ns() for t in complete) / 1e6
    link = len(complete) * rtt_ms
    found = {"round_trips": rows, "complete": len(complete), "pass_ms": round(passed, 4),
             "queue_ms": round(queued, 4), "link_ms": link,
             "overhead_ms": round(sum(t.overhead_ns(emulated_ns) for t in complete) / 1e6, 4),
             "busy_ms": _ms(recorded.busy_ns), "software_ms": None}
    if not stats.get("ok"):
        return found
    if MODE_NAMES.get(stats.get("mode")) != "cloud_led":
        found["software_ms"] = round(1000 * (stats["total_s"] - stats["draft_s"]) - link
                                     - passed - queued, 4)
    elif recorded.busy_ns is not None:
        found["software_ms"] = round(1000 * stats["total_s"] - rtt_ms
                                     - recorded.busy_ns / 1e6, 4)
    return found


def stacked(timeline: dict, stats: dict, rtt_ms: float) -> dict[str, float]:
    """A decision's live time in ms as parts that add up to it: edge drafting, each hop
    segment summed over its round trips (emulated latency taken out into its own part),
    and the edge's own time outside them (negative where drafting overlaps round trips)."""
    parts = {"edge drafting": 1000 * stats["draft_s"]}
    rows = [r for r in timeline["round_trips"] if not r["missing"]]
    for name in hops.SEGMENTS:
        parts[name] = sum(r["segments_ms"][name] for r in rows) \
            - (rtt_ms / 2 * len(rows) if name in hops.EMULATED else 0.0)
    parts[EMULATED_LINK] = rtt_ms * len(rows)
    parts["edge, outside round trips"] = 1000 * stats["total_s"] - sum(parts.values())
    return parts


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
