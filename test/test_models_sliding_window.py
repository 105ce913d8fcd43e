"""Sliding-window attention (Mistral family): the adapters apply the window by mask over a
cache that keeps every token, so decoding equals Hugging Face `generate` and a rollback is
exact at any depth, also far past the window."""
from __future__ import annotations

import functools

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from spec_vlm_control.core.decode import decode
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.models.base import Prompt
from spec_vlm_control.core.models.causal_lm import CausalLMAdapter
from spec_vlm_control.core.models.synthetic import MixtureDraft, random_prompt
from spec_vlm_control.core.protocol import MODES, DecodingParams

WINDOW = 5
PROMPT = 29                  # several windows long
MAX_NEW = 14
SEEDS = range(8)


@functools.lru_cache(maxsize=None)
def mistral(seed: int, window: int = WINDOW) -> CausalLMAdapter:
    torch.set_num_threads(1)
    config = MistralConfig(vocab_size=96, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=512, sliding_window=window,
                           initializer_range=0.3, bos_token_id=0, eos_token_id=1,
                           pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    return CausalLMAdapter(MistralForCausalLM(config).to(torch.float64))


@functools.lru_cache(maxsize=None)
def reference(seed: int) -> tuple[Prompt, list[int]]:
    """The target's own answer: generate(do_sample=False), which uses transformers' own
    sliding-window cache and mask."""
    prompt = random_prompt(seed, 96, length=PROMPT)
    with torch.no_grad():
        out = mistral(seed % 2).model.generate(prompt.input_ids, do_sample=False,
                                               max_new_tokens=MAX_NEW, pad_token_id=0)
    return prompt, out[0, PROMPT:].tolist()


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_equals_generate(mode, k):
    """The draft is the same sliding-window model with controlled agreement, so both sides
    extend and roll back sliding-window caches (before the fix 110 of 120 runs differed)."""
    for seed in SEEDS:
        prompt, expected = reference(seed)
        target = mistral(seed % 2)
        draft = MixtureDraft(mistral(seed % 2), (1.0, 0.6, 0.0)[seed % 3], seed=seed)
        params = DecodingParams(mode=MODES[mode], block_size=k, max_new_tokens=MAX_NEW,
                                seed=seed)
        out = decode(target, draft, prompt, params, exit_layers=[0],
                     edge_config=EdgeConfig(pipeline_depth=3, lead_blocks=1))
        assert out.stats.ok, out.stats.error
        assert out.tokens == expected, f"seed {seed}"


def test_rollback_is_exact_through_a_long_churn():
    """150 random extends and crops, many reaching back past the window: every logit row
    equals the model's own forward over the same tokens, and a crop leaves the cache
    bit-identical to one that never took the detour."""
    adapter = mistral(0)
    g = torch.Generator().manual_seed(5)
    tokens = random_prompt(1, 96, length=PROMPT).input_ids[0].tolist()
    state = adapter.prefill(Prompt(torch.tensor([tokens])))
    for step in range(150):
        block = torch.randint(2, 96, (int(torch.randint(0, 6, (1,), generator=g)),),
                              generator=g).tolist()
        logits = adapter.extend(state, block)
        fed = tokens + block
        with torch.no_grad():
            full = adapter.model(torch.tensor([fed])).logits[0, -len(block) - 1:]
        assert torch.allclose(logits, full, rtol=0, atol=1e-10), f"step {step}"
        keep = len(tokens) + int(torch.randint(-2 * WINDOW, len(block) + 1, (1,), generator=g))
        keep = max(keep, PROMPT)
        tokens = fed[:keep]
        adapter.crop(state, keep - 1, pending=tokens[-1])
    fresh = adapter.prefill(Prompt(torch.tensor([tokens])))
    for churned, clean in zip(state.cache.layers, fresh.cache.layers):
        assert torch.allclose(churned.keys, clean.keys, rtol=0, atol=1e-12)
        assert torch.allclose(churned.values, clean.values, rtol=0, atol=1e-12)
