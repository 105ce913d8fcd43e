"""The early-exit verifier: one target pass over [pending] + draft block, with early verdicts.

The pass runs layer by layer (DecoderAdapter.extend with on_layer). At each configured exit
layer the exit head predicts the target's distribution at every block position, the verdict
rule judges the block on it, and `on_early` receives that *early verdict* while the later
layers still run. The last layer's verdict is final: it is committed into the sequence and
returned. Verifying a block and one autoregressive step (an empty block) are the same call.
"""
from __future__ import annotations

import time
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


class EarlyExitVerifier:
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

    @torch.inference_mode()
    def verify(self, seq: Sequence, block: list[int], rule: VerdictRule, start: int,
               q: Optional[torch.Tensor] = None, on_early: Optional[OnEarly] = None,
               candidates: Optional[ExitCandidates] = None, room: int = 1 << 30) -> Judgement:
        """Judge `block` as the continuation of seq.tokens (generated position `start`
        onwards), commit the final verdict into `seq`, and return it. At most `room` tokens
        are committed, none after an EOS."""
        eos = self.target.eos_token_ids
        ids = None if candidates is None else candidates.for_block(block, self.target.device)

        def on_layer(layer: int, hidden: torch.Tensor) -> None:
            head = self.exits.get(layer)
            if head is None or on_early is None:
                return
            t0 = time.perf_counter()
            judgement = rule.judge(head(hidden, ids), block, q, start).clipped(block, room, eos)
            self.exit_seconds += time.perf_counter() - t0
            on_early(layer, judgement)

        logits = seq.feed(block, on_layer if self.exits and on_early else None)
        final = rule.judge(logits, block, q, start).clipped(block, room, eos)
        seq.settle(seq.tokens + final.committed(block))
        if candidates is not None:
            candidates.remember(logits)
        return final
