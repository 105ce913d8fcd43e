"""Tiny Llama-family models built in code, and drafts whose agreement with a target is set
on purpose, for tests and benchmarks.

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
               heads: int = 4, dtype=torch.float64, init_std: float = 0.3) -> CausalLMAdapter:
    """A random Llama built from a config (no download); a large init keeps its next-token
    distributions peaked enough that sampling tests have something to see."""
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=max(1, heads // 2), max_position_embeddings=512,
                         initializer_range=init_std, bos_token_id=0, eos_token_id=EOS,
                         pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(dtype)
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


class MemoTarget(DecoderAdapter):
    """A target's logits for one prompt, memoised per generated prefix.

    Drafts of controlled agreement need the target's own choice at every prefix they draft
    from; in a test matrix the same prefixes recur across blocks, modes and block sizes.
    A miss runs the target once over the whole prefix (through its adapter, so vision
    inputs work too) and remembers every prefix of it. Caches are token lists.
    """

    def __init__(self, target: DecoderAdapter, prompt: Prompt):
        self.target = target
        self.prompt_ids = prompt.input_ids[0].tolist()
        self.state = target.prefill(prompt)
        self.base_length = self.state.cache_length
        self.memo: dict[tuple, torch.Tensor] = {}
        for name in ("num_layers", "hidden_size", "vocab_size", "eos_token_ids", "dtype",
                     "device", "norm", "lm_head"):
            setattr(self, name, getattr(target, name))

    def fingerprint(self) -> str:
        return self.target.fingerprint()

    def logits_after(self, generated: tuple) -> torch.Tensor:
        if generated not in self.memo:
            rows = self.target.extend(self.state, list(generated))
            self.target.crop(self.state, self.base_length, self.prompt_ids[-1])
            for i in range(len(generated) + 1):
                self.memo[generated[:i]] = rows[i]
        return self.memo[generated]

    def prefill(self, prompt: Prompt) -> SequenceState:
        if prompt.input_ids[0].tolist() != self.prompt_ids:
            raise ValueError("MemoTarget serves the prompt it was built for")
        return SequenceState(cache=[], cache_length=self.base_length,
                             pending=self.prompt_ids[-1])

    def extend(self, state: SequenceState, tokens: list[int],
               on_layer: Optional[OnLayer] = None) -> torch.Tensor:
        fed = [state.pending, *tokens]
        before = state.cache                       # tokens from the prompt's last one on
        state.cache = before + fed
        state.cache_length += len(fed)
        return torch.stack([self.logits_after(tuple((before + fed[: i + 1])[1:]))
                            for i in range(len(fed))])

    def crop(self, state: SequenceState, cache_length: int, pending: int) -> None:
        state.cache = state.cache[: cache_length - self.base_length]
        state.cache_length, state.pending = cache_length, int(pending)
