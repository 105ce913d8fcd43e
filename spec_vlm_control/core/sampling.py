"""Distributions and the shared random stream of speculative sampling.

Randomness is a pure function of (seed, request, absolute generated position, slot), not of
call order: the early verdict and the final verdict of a block draw the same uniforms (so
they agree whenever the exit head's distribution is close), a block redrafted after a
rollback is judged with the same numbers, and cloud-led autoregressive sampling at a
position uses the very stream a verdict would have used there.
"""
from __future__ import annotations

import hashlib

import torch

SLOT_ACCEPT = 0    # u for "accept draft token d at this position"
SLOT_TARGET = 1    # u for sampling the target's own token (correction, bonus, autoregressive)
SLOT_DRAFT = 2     # u for the draft's choice at this position


class RandomStream:
    def __init__(self, seed: int, request_id: int):
        self.key = f"{int(seed)}:{int(request_id)}"

    def uniform(self, position: int, slot: int) -> float:
        digest = hashlib.blake2b(f"{self.key}:{position}:{slot}".encode(), digest_size=8).digest()
        return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)


def warp(logits: torch.Tensor, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """Target distribution over the vocabulary (rows), in float64: temperature, then nucleus."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= top_p     # keep the smallest set reaching p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(probs: torch.Tensor, u: float) -> int:
    """Inverse-CDF draw from one row of probabilities with a given uniform."""
    cdf = probs.double().cumsum(-1)
    index = int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])], dtype=cdf.dtype)))
    return min(index, probs.shape[-1] - 1)


def truncate(probs: torch.Tensor, top_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the m most likely tokens of one row: (ids, probs). The draft samples from this q
    and sends it sparsely; speculative sampling is lossless for any q. The probabilities are
    rounded to float32, what DraftBlock.support_probs carries, and both sides normalise them
    (sample() and dense()), so edge and cloud use the very same q."""
    m = min(top_m, probs.shape[-1])
    top = probs.topk(m)
    return top.indices, (top.values / top.values.sum()).float().double()


def dense(sizes: list[int], ids: list[int], probs: list[float], vocab: int) -> torch.Tensor:
    """Sparse q rows of a DraftBlock -> (len(sizes), vocab) float64, each row normalised."""
    rows = torch.zeros(len(sizes), vocab, dtype=torch.float64)
    start = 0
    for i, size in enumerate(sizes):
        rows[i, torch.tensor(ids[start:start + size], dtype=torch.long)] = torch.tensor(
            probs[start:start + size], dtype=torch.float64)
        start += size
    return rows / rows.sum(-1, keepdim=True).clamp_min(1e-300)
