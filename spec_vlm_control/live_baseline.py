"""The live baseline (edge parameter `live_baseline`): every decision decoded a second time,
live, by cloud-only streaming on the same frame and instruction, so the demo compares its
mode with streaming on the same machine, link and load, not only in replay.

The baseline is core/decode.py's `stream` (cloud_led, the edge drafting nothing). The two
requests run one after the other on the edge's worker thread, never overlapping, in ABBA
order over decisions (speculative first, baseline first, baseline first, speculative
first, ...), so that neither is always the one after a warm-up. Only the speculative
request's tokens reach the controller; the baseline's go to the baseline/ topics under the
decision's request id, where the demo checks that both answers are token-identical (the
decoding is lossless: under greedy decoding they must be).
"""
from __future__ import annotations

from dataclasses import replace

from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.protocol import DecodingParams


def baseline_first(decision: int) -> bool:
    """ABBA over the edge's decisions, counted from 0."""
    return decision % 4 in (1, 2)


def baseline_setup(params: DecodingParams, config: EdgeConfig) -> tuple[DecodingParams,
                                                                         EdgeConfig]:
    """The decision's parameters and edge configuration, switched to cloud-only streaming
    (as core/decode.py's mode_setup("stream"), without importing the cloud into the edge)."""
    return replace(params, mode=DecodingParams.MODE_CLOUD_LED), replace(config, drafting=False)


class InTurn:
    """EdgeSessions for one ActorThread, run one after the other: each starts once the one
    before it is done. Messages go to every started session (each keeps its own request's)."""

    def __init__(self, sessions: list):
        self.sessions = sessions
        self.clock = sessions[0].clock
        self.started = 0

    def start(self) -> None:
        self.sessions[self.started].start()
        self.started += 1

    @property
    def current(self):
        return self.sessions[self.started - 1]

    def _next_due(self) -> bool:
        return self.current.done and self.started < len(self.sessions)

    def _waiting(self) -> bool:
        """Not started yet (the node starts the first session on the worker thread)."""
        return self.started == 0

    def receive(self, message) -> None:
        for session in self.sessions[: self.started]:
            session.receive(message)

    def has_work(self) -> bool:
        return not self._waiting() and (self._next_due() or self.current.has_work())

    def wake_time(self) -> float:
        if self._waiting():
            return float("inf")
        return self.clock.now() if self._next_due() else self.current.wake_time()

    def work(self) -> None:
        if self._waiting():
            return
        if self._next_due():
            self.start()
        self.current.work()
