"""Capacity of a variant and the fleet goals.

Capacity is the largest number of robots whose p99 decision latency stays within twice the
single-robot streaming latency (the p99 of batched streaming with one robot: like for
like). N doubles from 1 until the bound fails (at most `max_robots`), then bisects between
the last N that met it and the first that failed, until the bracket is at most
`resolution` × N wide (0 = down to one robot).
"""
from __future__ import annotations

import math
from typing import Callable

from .simulation import STREAM, Variant

LATENCY_BOUND = 2.0           # p99 ≤ this × single-robot streaming latency
BATCHING_GAIN = 4.0           # each mode: batched capacity ≥ this × one session per pass
SPECULATIVE_GAIN = 2.0        # best batched speculative capacity ≥ this × batched streaming
P50_GROWTH = 1.3              # at N = GROWTH_AT, each variant's p50 ≤ this × its N = 1 p50
GROWTH_AT = 8


def search(meets: Callable[[int], bool], max_robots: int, resolution: float = 0.0) -> int:
    """The largest N ≤ max_robots with meets(N) (0 if not even one robot)."""
    met, n = 0, 1
    while meets(n):
        met = n
        if n >= max_robots:
            return met
        n = min(2 * n, max_robots)
    failed = n
    while failed - met > max(1, math.floor(resolution * met)):
        middle = (met + failed) // 2
        if meets(middle):
            met = middle
        else:
            failed = middle
    return met


def _goal(text: str, measured: float, bound: float, at_least: bool) -> dict:
    met = measured >= bound if at_least else measured <= bound
    return dict(goal=text, measured=measured, bound=bound, met=bool(met))


def goals(variants: list[Variant], capacity: dict[str, int],
          p50: dict[str, dict[int, float]]) -> list[dict]:
    """The issue's goals, as measured (a ratio over zero is infinite: null in the JSON)."""
    ratio = lambda a, b: a / b if b else math.inf   # noqa: E731
    name = {(v.mode, v.batched): v.name for v in variants}
    modes = [v.mode for v in variants if not v.batched]
    out = [_goal(f"{m}: batched capacity / one-session-per-pass capacity",
                 ratio(capacity[name[m, True]], capacity[name[m, False]]), BATCHING_GAIN, True)
           for m in modes]
    if modes and (STREAM, True) in name:
        best = max(modes, key=lambda m: capacity[name[m, True]])
        out.append(_goal(f"best batched speculative mode ({best}) / batched streaming capacity",
                         ratio(capacity[name[best, True]], capacity[name[STREAM, True]]),
                         SPECULATIVE_GAIN, True))
    for v in variants:
        by_n = p50.get(v.name, {})
        if 1 in by_n and GROWTH_AT in by_n:
            out.append(_goal(f"{v.name}: p50 at N = {GROWTH_AT} / p50 at N = 1",
                             ratio(by_n[GROWTH_AT], by_n[1]), P50_GROWTH, False))
    return out
