"""The cloud's part of each decoding mode: which target pass a session needs next.

One policy per session, chosen from DecodingParams.mode when it opens: in the edge-led modes
(plain … pipelined) the cloud verifies each block that names its committed prefix and
otherwise waits; in cloud_led it never waits, decoding one token itself whenever no queued
block is worth a pass (core/admission.py). A policy only decides: `verifiable` whether a queued
block is kept to verify, `next_pass` what to feed the target (a Pass). The cloud's scheduler
runs the pass and commits and answers its outcome, so passes of many sessions can be
gathered into one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .admission import Admission
from .protocol import DecodeRequest, DecodingParams, DraftBlock
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

    def next_pass(self, s: CloudSession, have: int = 1) -> Optional[Pass]:
        """The pass to run now, or None to wait (a pure question: has_work asks it too).
        `have`: positions the pass being formed holds with this session's step."""
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
    the frontier are verified in one pass, but only as many as pay (core/admission.py: the
    cloud's pass costs, the robot's acceptance)."""

    streams_commits = True

    def __init__(self, admission: Admission, robot_id: str) -> None:
        self.admission = admission
        self.acceptance = admission.acceptance(robot_id)
        self.checked: dict[tuple, int] = {}   # block identity -> overlap tokens compared

    def verifiable(self, s: CloudSession, block: DraftBlock, covered: int) -> bool:
        """Compare the block with the tokens committed since its prefix; feed the outcome
        to the robot's acceptance once per compared token."""
        a = block.assumed_length
        identity = (a, block.assumed_hash, tuple(block.tokens))
        seen = self.checked.get(identity, 0)
        overlap = min(covered, len(block.tokens))
        agree = common_length(block.tokens[:overlap], s.committed.tokens[a:a + overlap])
        if overlap > seen:
            self.acceptance.observe(max(0, agree - seen), agree < overlap)
            self.checked[identity] = overlap
        return agree == covered and len(block.tokens) > covered

    def next_pass(self, s: CloudSession, have: int = 1) -> Pass:
        """`have`: positions the pass being formed already holds (this session's step
        included), for a scheduler that batches sessions into one pass."""
        if s.next_block is not None:
            block, covered = s.next_block
            length = self.admission.best_length(len(block.tokens) - covered,
                                                self.acceptance.rate, have)
            if length > 0:
                return Pass(block.tokens[covered:covered + length], block, covered)
        return Pass([])

    def passed(self, p: Pass, final: Judgement, seconds: float) -> None:
        if p.block is not None:
            self.acceptance.observe(final.accepted, final.accepted < len(p.tokens))

    def queued(self, blocks: list[DraftBlock]) -> None:
        if self.checked:
            alive = {(b.assumed_length, b.assumed_hash, tuple(b.tokens)) for b in blocks}
            self.checked = {k: v for k, v in self.checked.items() if k in alive}


def cloud_policy(request: DecodeRequest, admission: Admission) -> EdgeLed:
    """The policy of the request's mode (cloud_led admits blocks by the cloud's `admission`)."""
    if request.params.mode == DecodingParams.MODE_CLOUD_LED:
        return CloudLed(admission, request.robot_id)
    return EdgeLed()
