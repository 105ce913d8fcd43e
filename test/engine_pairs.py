"""Target/draft pairs for the engine's losslessness matrix, one factory per model family.

A factory maps a seed to an EnginePair: a float64 target, a prompt, and the independent
reference, Hugging Face `generate(do_sample=False)` on that target. Drafts of controlled
agreement wrap the target (MixtureDraft over a MemoTarget, so the target's choices are
computed once per prefix and shared by all runs of a seed). Adding a model family is one
line in PAIR_FACTORIES.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch

from spec_vlm_control.core.models.base import DecoderAdapter, OnLayer, Prompt, SequenceState
from spec_vlm_control.core.models.synthetic import MixtureDraft, random_prompt, tiny_llama

MAX_NEW = 14                 # generated tokens per request in the matrix
AGREEMENTS = (1.0, 0.85, 0.6, 0.3, 0.0)   # cycled over seeds


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


@dataclass
class EnginePair:
    target: DecoderAdapter
    prompt: Prompt
    reference: list[int]     # HF generate(do_sample=False, max_new_tokens=MAX_NEW)

    def draft(self, agreement: float, seed: int) -> DecoderAdapter:
        if not hasattr(self, "_memo"):
            self._memo = MemoTarget(self.target, self.prompt)
        return MixtureDraft(self._memo, agreement, seed=seed)


def hf_greedy(model, max_new_tokens: int, **inputs) -> list[int]:
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=0)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@functools.lru_cache(maxsize=None)
def _llama_target(index: int):
    torch.set_num_threads(1)
    return tiny_llama(seed=100 + index)


@functools.lru_cache(maxsize=None)
def llama_pair(seed: int) -> EnginePair:
    """Two tiny Llama targets (2 layers, hidden 32, vocab 96), prompts of 4-8 tokens."""
    target = _llama_target(seed % 2)
    prompt = random_prompt(seed, target.vocab_size, length=4 + seed % 5)
    return EnginePair(target, prompt, hf_greedy(target.model, MAX_NEW, input_ids=prompt.input_ids))


INSTRUCTIONS = ("go to the red ball", "turn towards the blue box", "stop")


@functools.lru_cache(maxsize=None)
def _qwen2vl_base(index: int):
    from tiny_models import tiny_qwen2vl_pair
    torch.set_num_threads(1)
    return tiny_qwen2vl_pair(seed=200 + index)


@functools.lru_cache(maxsize=None)
def qwen2vl_pair(seed: int) -> EnginePair:
    """Two tiny Qwen2-VL targets (3 layers, hidden 64, byte vocab); per seed a synthetic
    image and an instruction through the chat template (86-96 prompt tokens, 9 of them image)."""
    from tiny_models import synthetic_image
    from spec_vlm_control.core.prompts import Qwen2VLPrompts
    base = _qwen2vl_base(seed % 2)
    prompt = Qwen2VLPrompts(base.tokenizer, base.image_processor).build(
        INSTRUCTIONS[seed % len(INSTRUCTIONS)], synthetic_image(seed))
    ids = prompt.input_ids
    reference = hf_greedy(base.target.model, MAX_NEW, input_ids=ids,
                          mm_token_type_ids=(ids == base.target.image_token_id).int(),
                          **prompt.vision)
    return EnginePair(base.target, prompt, reference)


PAIR_FACTORIES = {
    "llama": llama_pair,
    "qwen2vl": qwen2vl_pair,
}
