"""The target pass: [pending] + draft block of one or several sequences through the target in
one batched pass, with early verdicts.

The pass runs layer by layer (DecoderAdapter.extend_batch with on_layer). At each configured
exit layer the exit head predicts the target's distribution at every block position of every
row, the row's verdict rule judges its block on it, and the row's `on_early` receives that
*early verdict* while the later layers still run. The last layer's verdict is final: it is
committed into the row's sequence and returned. Verifying a block and one autoregressive step
(an empty block) are the same call; one sequence alone is a batch of one. Chunks of other
sequences' prompts may share the pass (they are fed, not judged).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

from .exit_head import ExitHead
from .models.base import DecoderAdapter
from .sequence import Sequence
from .verdict import Judgement, VerdictRule

OnEarly = Callable[[int, Judgement], None]


class ExitCandidates:
    """Per-sequence memory of the tokens the target recently ranked high; a cheap exit head
    scores only these plus the block's draft tokens."""

    def __init__(self, size: int):
        self.size = size
        self.recent: list[int] = []

    def remember(self, logits: torch.Tensor) -> None:
        top = logits.topk(min(self.size, logits.shape[-1]), dim=-1).indices.flatten().tolist()
        self.recent = list(dict.fromkeys(top + self.recent))[: 4 * self.size]

    def for_block(self, block: list[int], device) -> torch.Tensor:
        return torch.tensor(sorted(set(self.recent) | set(block)), dtype=torch.long, device=device)


@dataclass
class Row:
    """One sequence's part of a pass: judge `block` as the continuation of seq.tokens
    (generated position `start` onwards); at most `room` tokens are committed, none after
    an EOS. q: the draft's probabilities of the block (sampling)."""

    seq: Sequence
    block: list[int]
    rule: VerdictRule
    start: int
    q: Optional[torch.Tensor] = None
    on_early: Optional[OnEarly] = None
    candidates: Optional["ExitCandidates"] = None
    room: int = 1 << 30


class TargetPass:
    def __init__(self, target: DecoderAdapter, exits: Iterable[ExitHead] = (),
                 candidate_top: Optional[int] = None):
        """exits: exit heads by layer (0-based index of the decoder layer they read);
        candidate_top: None = exits score the whole vocabulary, else a cheap candidate-set
        head (see ExitCandidates) fed with this many top tokens per verified position."""
        self.target = target
        self.exits = {head.layer: head for head in exits}
        self.candidate_top = candidate_top
        self.exit_seconds = 0.0       # time spent in exit heads (overhead accounting)

    @classmethod
    def with_layers(cls, target: DecoderAdapter, layers: Iterable[int],
                    adapters: Optional[dict] = None, candidate_top: Optional[int] = None):
        adapters = adapters or {}
        return cls(target, [ExitHead(l, target.norm, target.lm_head, adapters.get(l))
                            for l in layers], candidate_top)

    def new_candidates(self) -> Optional[ExitCandidates]:
        return ExitCandidates(self.candidate_top) if self.candidate_top else None

    def verify(self, seq: Sequence, block: list[int], rule: VerdictRule, start: int,
               q: Optional[torch.Tensor] = None, on_early: Optional[OnEarly] = None,
               candidates: Optional[ExitCandidates] = None, room: int = 1 << 30) -> Judgement:
        """One sequence's pass (see Row): the final verdict, committed into `seq`."""
        return self.run([Row(seq, block, rule, start, q, on_early, candidates, room)])[0]

    @torch.inference_mode()
    def run(self, rows: list[Row], prompts: list[tuple[Sequence, int]] = ()) -> list[Judgement]:
        """One pass over every row's sequence (one target); each row's final verdict,
        committed into its sequence. Each (sequence, positions) of `prompts` feeds that many
        more of its prompt in the same pass. If the pass raises, no sequence has changed."""
        eos = self.target.eos_token_ids
        ids = [None if r.candidates is None
               else r.candidates.for_block(r.block, self.target.device) for r in rows]

        def on_layer(b: int, layer: int, hidden: torch.Tensor) -> None:
            head, r = self.exits.get(layer), rows[b]
            if head is None or r.on_early is None:
                return
            t0 = time.perf_counter()
            judgement = r.rule.judge(head(hidden, ids[b]), r.block, r.q, r.start)
            judgement = judgement.clipped(r.block, r.room, eos)
            self.exit_seconds += time.perf_counter() - t0
            r.on_early(layer, judgement)

        early = self.exits and any(r.on_early for r in rows)
        try:
            logits = Sequence.feed_batch([r.seq for r in rows], [r.block for r in rows],
                                         on_layer if early else None, prompts)
        except BaseException:
            for r in rows:            # rows an adapter fed before the one that raised
                with contextlib.suppress(Exception):
                    r.seq.settle(r.seq.tokens)
            raise
        finals = []
        for r, rows_logits in zip(rows, logits):
            final = r.rule.judge(rows_logits, r.block, r.q, r.start).clipped(r.block, r.room, eos)
            r.seq.settle(r.seq.tokens + final.committed(r.block))
            if r.candidates is not None:
                r.candidates.remember(rows_logits)
            finals.append(final)
        return finals
