"""Exit heads: predict the final layer's next-token distribution from a middle layer.

An exit head reuses the target's own final norm and LM head, optionally after a trained
residual adapter (h + W h, W initialised to zero so an untrained adapter is the identity).
It only ever produces a *hint* (the early verdict); the last layer still decides.

With a large vocabulary the LM head dominates an exit's cost (SmolLM2: 49k rows, ~14 ms
per position on one CPU thread), so an exit may score only a candidate set (the block's
draft tokens plus the target's recent top tokens): logits outside it are -inf. The hint
gets coarser, the output cannot change.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class ExitHead(nn.Module):
    def __init__(self, layer: int, norm: nn.Module, lm_head: nn.Module,
                 adapter: Optional[nn.Linear] = None):
        super().__init__()
        self.layer = layer
        self.norm = norm
        self.lm_head = lm_head
        self.adapter = adapter

    @staticmethod
    def new_adapter(hidden_size: int, dtype: torch.dtype, device=None) -> nn.Linear:
        """A residual adapter that starts as the identity map."""
        adapter = nn.Linear(hidden_size, hidden_size, bias=True, dtype=dtype, device=device)
        nn.init.zeros_(adapter.weight)
        nn.init.zeros_(adapter.bias)
        return adapter

    def forward(self, hidden: torch.Tensor, candidates: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.adapter is not None:
            hidden = hidden + self.adapter(hidden)
        hidden = self.norm(hidden)
        if candidates is None:
            return self.lm_head(hidden)
        weight = self.lm_head.weight[candidates]
        scores = hidden @ weight.T
        if getattr(self.lm_head, "bias", None) is not None:
            scores = scores + self.lm_head.bias[candidates]
        logits = hidden.new_full((*hidden.shape[:-1], self.lm_head.weight.shape[0]), float("-inf"))
        logits[..., candidates] = scores
        return logits
