"""Synthetic models for `spec-vlm bench` and the regime predictions of `spec-vlm plan`:
tiny Llama-family models built in code, and drafts whose agreement with a target is set on
purpose (tests use them too).

A random tiny draft almost never agrees with a random tiny target, so a losslessness test
built only on it would exercise the rejection path and nothing else. `MixtureDraft` wraps a
target (or a reference answer) and proposes the target's own greedy token with probability
`agreement`, otherwise a different one; the coin is keyed by (seed, position) so a run is
reproducible. It is a DecoderAdapter, so the edge code that drives it is the real one.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from .base import DecoderAdapter, OnLayer, Prompt, SequenceState
from .causal_lm import CausalLMAdapter

EOS = 1


def tiny_llama(seed: int = 0, vocab: int = 96, hidden: int = 32, layers: int = 2,
               heads: int = 4, dtype=torch.float64, init_std: float = 0.3,
               device: str = "cpu") -> CausalLMAdapter:
    """A random Llama built from a config (no download); a large init keeps its next-token
    distributions peaked enough that sampling tests have something to see."""
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=max(1, heads // 2), max_position_embeddings=512,
                         initializer_range=init_std, bos_token_id=0, eos_token_id=EOS,
                         pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    return CausalLMAdapter(model, tokenizer_hash=f"tiny-vocab-{vocab}")


def random_prompt(seed: int, vocab: int, length: int = 6) -> Prompt:
    g = torch.Generator().manual_seed(seed)
    return Prompt(input_ids=torch.randint(2, vocab, (1, length), generator=g))


def _coin(seed: int, position: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0 ** 64


class MixtureDraft(DecoderAdapter):
    """Agrees with `base`'s greedy choice with probability `agreement` (per position).

    `base` supplies both the compute and the logits: the target itself (tests: the draft then
    costs what the target costs) or a cheap model with a `reference` answer whose token at
    each position stands for the target's choice (benchmarks: real draft cost, known
    agreement). On disagreement the argmax moves to another token; elsewhere the
    distribution is base's, so sampling still sees a smooth q.
    """

    def __init__(self, base: DecoderAdapter, agreement: float, seed: int = 0,
                 reference: Optional[Sequence[int]] = None, prompt_length: int = 0):
        self.base = base
        self.agreement = agreement
        self.seed = seed
        self.reference = list(reference) if reference is not None else None
        self.prompt_length = prompt_length
        for name in ("num_layers", "hidden_size", "vocab_size", "eos_token_ids", "dtype",
                     "device", "norm", "lm_head"):
            setattr(self, name, getattr(base, name))

    def fingerprint(self) -> str:
        return self.base.fingerprint()

    def prefill(self, prompt: Prompt) -> SequenceState:
        return self.base.prefill(prompt)

    def crop(self, state: SequenceState, cache_length: int, pending: int) -> None:
        self.base.crop(state, cache_length, pending)

    def extend(self, state: SequenceState, tokens: list[int],
               on_layer: Optional[OnLayer] = None) -> torch.Tensor:
        first = state.cache_length + 1          # sequence position predicted by row 0
        logits = self.base.extend(state, tokens, on_layer).clone()
        for i, row in enumerate(logits):
            position = first + i
            choice = self._choice(row, position)
            if choice is None:
                continue
            if _coin(self.seed, position) >= self.agreement:
                choice = (choice + 1 + int(_coin(self.seed + 1, position) * (self.vocab_size - 1))) \
                    % self.vocab_size
            if int(row.argmax()) != choice:
                row[choice] = row.max() + 1.0
        return logits

    def _choice(self, row: torch.Tensor, position: int) -> Optional[int]:
        if self.reference is None:
            return int(row.argmax())
        index = position - self.prompt_length
        return self.reference[index] if 0 <= index < len(self.reference) else None
