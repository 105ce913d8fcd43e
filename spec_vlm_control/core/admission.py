"""Cloud-led admission: how many queued draft tokens to verify instead of one autoregressive
step, from estimates the cloud keeps across sessions.

What a pass costs is a property of the cloud's target and hardware, so one PassCosts per
CloudVerifier learns it from every pass of every session (a decayed least-squares line
through (positions, seconds)): the second request starts warm. How often a draft agrees is a
property of the robot's draft model, so Acceptance is kept per robot_id and carried from one
request to the next: a decision is only 2 to 6 tokens, too short for a per-session estimate
to learn anything before its first block is judged.

The rule (Admission.best_length): adding r draft positions to the pass being formed, which
already holds `have` positions (1: this session's own step; more once a scheduler batches
sessions), costs marginal(have, r) = cost(have + r) - cost(have) and yields
a + a^2 + ... + a^r extra tokens in expectation. Admit r only when
(1 + expected) / cost(have + r) beats 1 / cost(have), i.e. marginal(have, r) <
expected * cost(have): per expected token, a block never costs more than the step it
replaces. Acceptance starts at 0, so a robot's draft is not
verified until its tokens have been seen to agree with what the cloud committed on its own
(compared for free as the cloud's commits pass them): cloud_led starts as streaming. The
slope is unknown until one pass with draft positions has run; until then a single position
(a probe, once per cloud) is admitted.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional


class PassCosts:
    """seconds(positions) = base + slope * positions, fitted with weights decaying per pass
    so the line follows the machine's load."""

    DECAY = 0.97
    MIN_SPREAD = 0.01     # weighted variance of positions below which the slope is kept

    def __init__(self) -> None:
        self.w = self.n = self.nn = self.t = self.nt = 0.0
        self.slope: Optional[float] = None

    def record(self, positions: int, seconds: float) -> None:
        d = self.DECAY
        self.w = d * self.w + 1.0
        self.n = d * self.n + positions
        self.nn = d * self.nn + positions * positions
        self.t = d * self.t + seconds
        self.nt = d * self.nt + positions * seconds
        spread = self.w * self.nn - self.n * self.n
        if spread > self.MIN_SPREAD * self.w * self.w:
            self.slope = max(0.0, (self.w * self.nt - self.n * self.t) / spread)

    def cost(self, positions: int) -> float:
        """Seconds of a pass over `positions` (the mean pass while the slope is unknown)."""
        slope = self.slope or 0.0
        return max(1e-9, (self.t - slope * self.n) / self.w + slope * positions)

    def marginal(self, have: int, add: int) -> float:
        """Seconds that `add` more positions add to a pass of `have`."""
        return self.cost(have + add) - self.cost(have)


class Acceptance:
    """Per-token agreement of one robot's draft with the target, counts decayed so the
    estimate follows the draft; it starts at 0 (nothing seen agree yet)."""

    DECAY = 0.97

    def __init__(self) -> None:
        self.matches = 0.0
        self.misses = 1.0

    def observe(self, matched: int, missed: bool) -> None:
        decay = self.DECAY ** (matched + int(missed))
        self.matches = self.matches * decay + matched
        self.misses = self.misses * decay + int(missed)

    @property
    def rate(self) -> float:
        return self.matches / (self.matches + self.misses)


class Admission:
    """One per cloud: the pass costs of its target and the acceptance of each robot's
    draft (the most recently heard `max_robots` robots are remembered)."""

    def __init__(self, max_robots: int = 4096) -> None:
        self.costs = PassCosts()
        self.max_robots = max_robots
        self.robots: OrderedDict[str, Acceptance] = OrderedDict()

    def acceptance(self, robot_id: str) -> Acceptance:
        known = self.robots.pop(robot_id, None) or Acceptance()
        self.robots[robot_id] = known
        while len(self.robots) > self.max_robots:
            self.robots.popitem(last=False)
        return known

    def best_length(self, available: int, rate: float, have: int = 1) -> int:
        """How many of `available` draft tokens to add to a pass that already holds `have`
        positions: the count with the most expected tokens per second, 0 when the step
        alone does better (see the module doc)."""
        if available <= 0 or rate <= 0.0:
            return 0
        if self.costs.slope is None:
            return 1                                   # the probe that measures the slope
        best, best_rate = 0, 1.0 / self.costs.cost(have)
        expected = 1.0
        for r in range(1, available + 1):
            expected += rate ** r
            per_second = expected / self.costs.cost(have + r)
            if per_second > best_rate:
                best, best_rate = r, per_second
        return best
