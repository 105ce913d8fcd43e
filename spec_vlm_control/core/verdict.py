"""The verdict rule: how many draft tokens the target accepts, and its own next token.

Greedy: accept while the draft token is the target's argmax; the next token is the target's
argmax after the accepted ones. Sampling (speculative sampling, Leviathan et al. / Chen et
al.): accept d_i when u < p_i(d_i) / q_i(d_i); on the first rejection draw from the
normalised residual (p_i - q_i)+; if all k are accepted draw a bonus from p_k. The same rule
judges the exit head's logits (early verdict) and the last layer's (final verdict).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .protocol import DecodingParams
from .sampling import SLOT_ACCEPT, SLOT_TARGET, RandomStream, sample, warp


@dataclass(frozen=True)
class Judgement:
    accepted: int
    next_token: int
    confidence: float      # probability the judged distribution gives this outcome

    def committed(self, block: list[int]) -> list[int]:
        return block[: self.accepted] + [self.next_token]

    def clipped(self, block: list[int], room: int, eos: frozenset[int]) -> "Judgement":
        """Stop at the first accepted EOS and at `room` new tokens (max_new_tokens): an
        accepted draft token is the target's own token, so it may serve as `next_token`."""
        n = self.accepted
        for i, token in enumerate(block[:n]):
            if token in eos:
                n = i
                break
        n = min(n, room - 1)
        if n == self.accepted:
            return self
        return Judgement(n, block[n], self.confidence)


class VerdictRule:
    def __init__(self, params: DecodingParams, stream: RandomStream):
        self.params = params
        self.stream = stream

    def judge(self, logits: torch.Tensor, block: list[int], q: Optional[torch.Tensor],
              start: int) -> Judgement:
        """logits: (len(block)+1, vocab), row i after block[:i]; block token i sits at
        generated position start + i; q: (len(block), vocab) draft probabilities (sampling)."""
        logits = logits.detach()
        if self.params.greedy:
            return self._greedy(logits, block)
        return self._sampled(warp(logits, self.params.temperature, self.params.top_p),
                             block, q, start)

    @staticmethod
    def _greedy(logits: torch.Tensor, block: list[int]) -> Judgement:
        best = logits.argmax(-1).tolist()
        probs = torch.softmax(logits.double(), -1)
        n = 0
        while n < len(block) and block[n] == best[n]:
            n += 1
        confidence = float(probs[torch.arange(n + 1), torch.tensor(best[: n + 1])].prod())
        return Judgement(n, best[n], confidence)

    def _sampled(self, p: torch.Tensor, block: list[int], q: torch.Tensor, start: int) -> Judgement:
        confidence = 1.0
        for i, d in enumerate(block):
            ratio = float(p[i, d]) / max(float(q[i, d]), 1e-300)
            if self.stream.uniform(start + i, SLOT_ACCEPT) < min(1.0, ratio):
                confidence *= min(1.0, ratio)
                continue
            residual = (p[i] - q[i]).clamp_min(0.0)
            if float(residual.sum()) <= 0.0:      # p == q on q's support: nothing to correct
                residual = p[i]
            t = sample(residual, self.stream.uniform(start + i, SLOT_TARGET))
            return Judgement(i, t, confidence * (1.0 - min(1.0, ratio)))
        n = len(block)
        t = sample(p[n], self.stream.uniform(start + n, SLOT_TARGET))
        return Judgement(n, t, confidence * float(p[n, t]))
