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

import torch

from spec_vlm_control.core.models.base import DecoderAdapter, Prompt
from spec_vlm_control.core.models.tiny import MemoTarget, MixtureDraft, random_prompt, tiny_llama

MAX_NEW = 14                 # generated tokens per request in the matrix
AGREEMENTS = (1.0, 0.85, 0.6, 0.3, 0.0)   # cycled over seeds


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
    from spec_vlm_control.core.models.tiny_vlm import tiny_qwen2vl_pair
    torch.set_num_threads(1)
    return tiny_qwen2vl_pair(seed=200 + index)


@functools.lru_cache(maxsize=None)
def qwen2vl_pair(seed: int) -> EnginePair:
    """Two tiny Qwen2-VL targets (3 layers, hidden 64, byte vocab); per seed a synthetic
    image and an instruction through the chat template (86-96 prompt tokens, 9 of them image)."""
    from spec_vlm_control.core.models.tiny_vlm import synthetic_image
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
