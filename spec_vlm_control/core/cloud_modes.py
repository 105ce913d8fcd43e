"""The cloud's part of each decoding mode: which target pass a session needs next.

One policy per session, chosen from DecodingParams.mode when it opens: in the edge-led modes
(plain … pipelined) the cloud verifies each block that names its committed prefix and
otherwise waits; in cloud_led it never waits, decoding one token itself whenever no queued
block is worth a pass (Admission). A policy only decides: `verifiable` whether a queued
block is kept to verify, `next_pass` what to feed the target (a Pass). The cloud's scheduler
runs the pass and commits and answers its outcome, so passes of many sessions can be
gathered into one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .protocol import DecodingParams, DraftBlock
from .sequence import common_length
from .verdict import Judgement

if TYPE_CHECKING:
    from .cloud import CloudSession


@dataclass
class Pass:
    """One target pass a session needs: feed `tokens` after its committed prefix. They are
    the tokens of `block` past the `covered` ones the prefix already holds, or none (no
    block) for one autoregressive step."""

    tokens: list[int]
    block: Optional[DraftBlock] = None
    covered: int = 0


class EdgeLed:
    """Verify each block that assumes exactly the committed prefix, all of its tokens; the
    edge hears the outcome as a Verdict."""

    streams_commits = False        # cloud_led: every commit also goes out as CommittedTokens

    def verifiable(self, s: CloudSession, block: DraftBlock, covered: int) -> bool:
        """Whether a block naming an older or the current committed prefix (`covered` of
        its tokens already committed) is kept to verify; if not it gets a catch-up."""
        return covered == 0

    def next_pass(self, s: CloudSession) -> Optional[Pass]:
        """The pass to run now, or None to wait (a pure question: has_work asks it too)."""
        if s.next_block is None:
            return None
        block, covered = s.next_block
        return Pass(block.tokens[covered:], block, covered)

    def passed(self, p: Pass, final: Judgement, seconds: float) -> None:
        """The pass ran in `seconds` and the target judged `final`."""

    def queued(self, blocks: list[DraftBlock]) -> None:
        """The session's queue is now `blocks`: forget what was kept about any other."""


class CloudLed(EdgeLed):
    """Decode one token whenever no queued block is worth a pass. A queued block is compared
    with what was committed past its assumed prefix; if it still agrees, its tokens beyond
    the frontier are verified in one pass, but only as many as pay (Admission)."""

    streams_commits = True

    def __init__(self) -> None:
        self.admission = Admission()
        self.checked: dict[tuple, int] = {}   # block identity -> overlap tokens compared

    def verifiable(self, s: CloudSession, block: DraftBlock, covered: int) -> bool:
        """Compare the block with the tokens committed since its prefix; feed the outcome
        to admission once per compared token."""
        a = block.assumed_length
        identity = (a, block.assumed_hash, tuple(block.tokens))
        seen = self.checked.get(identity, 0)
        overlap = min(covered, len(block.tokens))
        agree = common_length(block.tokens[:overlap], s.committed.tokens[a:a + overlap])
        if overlap > seen:
            self.admission.observe(max(0, agree - seen), agree < overlap)
            self.checked[identity] = overlap
        return agree == covered and len(block.tokens) > covered

    def next_pass(self, s: CloudSession) -> Pass:
        if s.next_block is not None:
            block, covered = s.next_block
            length = self.admission.best_length(len(block.tokens) - covered)
            if length > 0:
                return Pass(block.tokens[covered:covered + length], block, covered)
        return Pass([])

    def passed(self, p: Pass, final: Judgement, seconds: float) -> None:
        self.admission.record_pass(len(p.tokens) + 1, seconds)
        if p.block is not None:
            self.admission.observe(final.accepted, final.accepted < len(p.tokens))

    def queued(self, blocks: list[DraftBlock]) -> None:
        if self.checked:
            alive = {(b.assumed_length, b.assumed_hash, tuple(b.tokens)) for b in blocks}
            self.checked = {k: v for k, v in self.checked.items() if k in alive}


class Admission:
    """Cloud-led: is verifying r draft tokens worth more than one autoregressive step?

    A pass over r+1 positions yields 1 + a + a^2 + ... + a^r tokens in expectation, with a the
    per-token acceptance rate (estimated from every comparison of a draft with what the
    target committed, counts decayed so the estimate follows the draft); it costs
    t1 + slope*r where t1 is a one-token pass. Verify only when tokens per second beat
    t1's one token. A draft that never agrees soon stops being verified; its tokens are
    still compared for free as the cloud's own tokens pass them, so a draft that starts
    agreeing is admitted again."""

    DECAY = 0.97

    def __init__(self) -> None:
        self.matches = 1.0
        self.misses = 1.0
        self.t1: Optional[float] = None
        self.slope = 0.0

    def observe(self, matched: int, missed: bool) -> None:
        for _ in range(matched + int(missed)):
            self.matches *= self.DECAY
            self.misses *= self.DECAY
        self.matches += matched
        self.misses += int(missed)

    @property
    def rate(self) -> float:
        return self.matches / (self.matches + self.misses)

    def record_pass(self, positions: int, seconds: float) -> None:
        if positions <= 1:
            self.t1 = seconds if self.t1 is None else 0.8 * self.t1 + 0.2 * seconds
        elif self.t1 is not None:
            slope = max(0.0, (seconds - self.t1) / (positions - 1))
            self.slope = 0.8 * self.slope + 0.2 * slope

    def best_length(self, available: int) -> int:
        """How many of the `available` draft tokens to verify in one pass: the count with
        the most expected tokens per second, or 0 when one autoregressive step does better."""
        if self.t1 is None:
            return available
        a = self.rate
        best, best_rate = 0, 1.0 / self.t1
        expected = 1.0
        for r in range(1, available + 1):
            expected += a ** r
            rate = expected / (self.t1 + self.slope * r)
            if rate > best_rate:
                best, best_rate = r, rate
        return best


def cloud_policy(params: DecodingParams) -> EdgeLed:
    """The policy of the request's mode."""
    return CloudLed() if params.mode == DecodingParams.MODE_CLOUD_LED else EdgeLed()
