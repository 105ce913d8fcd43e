"""The GIL switch interval of the node processes.

A model node's worker thread (the cloud's verifier, the edge's session) runs Python between
torch calls and lets another thread take the GIL only every switch interval (CPython's
default: 5 ms). A message that arrives while it computes waits up to that long, per
hand-over, for the executor's thread to deliver it. A shorter interval was measured to
change nothing on this package's graphs (0.5 against 5 ms: docs/latency.md), so the nodes
keep CPython's; SPEC_VLM_SWITCH_INTERVAL_MS sets another (`spec-vlm bench-link
--switch-intervals` compares values). Imports nothing heavy: the command line reads it.
"""
from __future__ import annotations

import os

ENV = "SPEC_VLM_SWITCH_INTERVAL_MS"
DEFAULT_MS = 5.0


def milliseconds(raw: str) -> float:
    """A switch interval given in ms; ValueError unless a number in (0, 1000]."""
    try:
        ms = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number of milliseconds") from None
    if not 0.0 < ms <= 1000.0:
        raise ValueError(f"{raw!r}: a switch interval is in (0, 1000] milliseconds")
    return ms


def switch_interval_s() -> float:
    """The interval a node process runs with, in seconds; ValueError for a bad override."""
    raw = os.environ.get(ENV, "")
    try:
        return (milliseconds(raw) if raw else DEFAULT_MS) / 1000.0
    except ValueError as error:
        raise ValueError(f"{ENV}: {error}") from None
