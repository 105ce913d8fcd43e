"""Clocks for the edge and the cloud.

Each side reads time only through its clock, so the same session code runs in real time
(ROS nodes, threads), in virtual time with measured compute (benchmarks: compute runs one
side at a time, each side's clock advances by what its work really took, the link adds its
latency), or in virtual time with a fixed cost model (tests: exactly reproducible).
"""
from __future__ import annotations

import time


class RealClock:
    def start(self, t: float) -> None:
        """Real time runs by itself."""

    def now(self) -> float:
        return time.monotonic()


class MeasuredClock:
    """Virtual time that advances with the wall time of the work done since `start`, or with
    another `timer`: time.process_time counts this process's CPU time only, so the other
    processes of a busy shared machine do not stretch it."""

    def __init__(self, timer=time.perf_counter) -> None:
        self.timer = timer
        self.t0 = 0.0
        self.r0 = timer()

    def start(self, t: float) -> None:
        self.t0, self.r0 = t, self.timer()

    def now(self) -> float:
        return self.t0 + self.timer() - self.r0


class ManualClock:
    """Virtual time that advances only when work is charged to it (see CostedAdapter)."""

    def __init__(self) -> None:
        self.t = 0.0

    def start(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class CostedAdapter:
    """A DecoderAdapter wrapper that charges a ManualClock a fixed cost model per pass:
    `per_pass + per_token * positions`, spread evenly over the layers so an exit layer's
    early verdict is stamped part-way through the pass."""

    def __init__(self, adapter, clock: ManualClock, per_pass: float, per_token: float = 0.0):
        self.adapter = adapter
        self.clock = clock
        self.per_pass = per_pass
        self.per_token = per_token

    def __getattr__(self, name):
        return getattr(self.adapter, name)

    def _charge(self, positions: int) -> float:
        return self.per_pass + self.per_token * positions

    def prefill(self, prompt):
        self.clock.advance(self._charge(int(prompt.input_ids.shape[1])))
        return self.adapter.prefill(prompt)

    def extend(self, state, tokens, on_layer=None):
        step = self._charge(len(tokens) + 1) / self.adapter.num_layers

        def charged(layer, hidden):
            self.clock.advance(step)
            if on_layer is not None:
                on_layer(layer, hidden)

        logits = self.adapter.extend(state, tokens, charged)
        return logits

    def begin(self, prompt):
        state = self.adapter.begin(prompt)
        if state.unfed is None:                     # it prefilled at once
            self.clock.advance(self._charge(int(prompt.input_ids.shape[1])))
        return state

    def feed_prompt(self, state, positions):
        self.extend_batch([], [], chunks=[(state, positions)])

    def extend_batch(self, states, tokens, on_layer=None, chunks=()):
        """A batched pass costs one pass plus every row's positions, prompt chunks included
        (padding is free)."""
        positions = sum(len(row) + 1 for row in tokens) + sum(min(n, len(state.unfed))
                                                              for state, n in chunks)
        if not states:                              # prompt chunks alone: no layer hook
            self.clock.advance(self._charge(positions))
            return self.adapter.extend_batch(states, tokens, on_layer, chunks)
        step = self._charge(positions) / self.adapter.num_layers
        charged = set()

        def charge(row, layer, hidden):
            if layer not in charged:
                charged.add(layer)
                self.clock.advance(step)
            if on_layer is not None:
                on_layer(row, layer, hidden)

        return self.adapter.extend_batch(states, tokens, charge, chunks)

    def crop(self, state, cache_length, pending):
        self.adapter.crop(state, cache_length, pending)
