"""Transports between edge and cloud: what happens to a message on the way.

A link turns (message, send time) into the list of times it arrives: empty when lost, two
entries when duplicated, later than a successor when reordered. The in-process link delivers
instantly and exactly once; the LinkEmulator adds one-way latency, jitter, a bandwidth limit,
loss, duplication and reordering from a seeded RNG, so a lossy run is reproducible.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields


def message_bytes(message) -> int:
    """Rough wire size: a fixed header plus 4 bytes per number and the raw bytes carried."""
    size = 64
    for f in fields(message):
        value = getattr(message, f.name)
        if isinstance(value, (bytes, str)):
            size += len(value)
        elif isinstance(value, list):
            size += 4 * len(value)
    return size


class InstantLink:
    def transmit(self, message, sent_at: float) -> list[float]:
        return [sent_at]


@dataclass
class LinkEmulator:
    latency_s: float = 0.025          # one way
    jitter_s: float = 0.0             # uniform extra delay in [0, jitter)
    bandwidth_bps: float = 0.0        # 0 = unlimited
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0              # probability of an extra delay of `reorder_delay_s`
    reorder_delay_s: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.busy_until = 0.0          # the wire is serial: bandwidth queues messages
        self.sent = self.lost = self.duplicated = 0

    def transmit(self, message, sent_at: float) -> list[float]:
        self.sent += 1
        start = sent_at
        if self.bandwidth_bps > 0:
            start = max(sent_at, self.busy_until)
            self.busy_until = start + 8 * message_bytes(message) / self.bandwidth_bps
            start = self.busy_until
        copies = 2 if self.rng.random() < self.duplicate else 1
        self.duplicated += copies - 1
        arrivals = []
        for _ in range(copies):
            if self.rng.random() < self.loss:
                self.lost += 1
                continue
            delay = self.latency_s + self.rng.random() * self.jitter_s
            if self.rng.random() < self.reorder:
                delay += self.reorder_delay_s
            arrivals.append(start + delay)
        return arrivals
