"""Model adapters, rollback, prefix hash and exit heads: the pieces the protocol stands on."""
from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from spec_vlm_control.core.exit_head import ExitHead
from spec_vlm_control.core.models.base import Prompt
from spec_vlm_control.core.models.causal_lm import CausalLMAdapter
from spec_vlm_control.core.models.synthetic import tiny_llama
from spec_vlm_control.core.prefix import FNV_OFFSET, CommittedPrefix, prefix_hash
from spec_vlm_control.core.sequence import Sequence

torch.set_num_threads(1)


def _model(kind: str):
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(vocab_size=80, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)
        return LlamaForCausalLM(config).eval()
    config = Qwen2Config(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True,
                         sliding_window=6, max_window_layers=1)
    return Qwen2ForCausalLM(config).eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_layer_by_layer_logits_equal_the_models_forward_fp32(kind):
    model = _model(kind)
    adapter = CausalLMAdapter(model)
    ids = torch.randint(0, 80, (1, 9), generator=torch.Generator().manual_seed(1))
    state = adapter.prefill(Prompt(ids))
    seen = []
    logits = adapter.extend(state, [5, 6, 7], on_layer=lambda i, h: seen.append((i, h.clone())))
    full = torch.cat([ids, torch.tensor([[5, 6, 7]])], 1)
    with torch.no_grad():
        out = model(full, output_hidden_states=True)
    assert (logits - out.logits[0, -4:]).abs().max() <= 1e-4
    assert [i for i, _ in seen] == [0, 1, 2]
    assert (seen[1][1] - out.hidden_states[2][0, -4:]).abs().max() <= 1e-4
    # cached single steps after a rollback of two tokens
    adapter.crop(state, 10, pending=6)
    for token in (11, 12):
        step = adapter.extend(state, [])
        adapter.crop(state, state.cache_length, pending=token)
    step = adapter.extend(state, [])
    with torch.no_grad():
        ref = model(torch.cat([ids, torch.tensor([[5, 6, 11, 12]])], 1)).logits[0, -1]
    assert (step[-1] - ref).abs().max() <= 1e-4


def test_rollback_restores_the_exact_cache():
    """Crop is exact: after a rejected detour the cache is bit-identical to what it was, and
    the next prediction equals that of a sequence that never took the detour."""
    target = tiny_llama(seed=3)
    prompt = Prompt(torch.tensor([[4, 5, 6, 7]]))

    def committed_two() -> Sequence:
        seq = Sequence(target, prompt)
        seq.feed([10])
        seq.settle([10, 11])
        return seq

    seq = committed_two()
    before = [(layer.keys.clone(), layer.values.clone()) for layer in seq.state.cache.layers]
    seq.feed([12, 13, 14])
    seq.settle([10, 11, 12, 13, 14, 15])
    seq.settle([10, 11])                              # everything after two tokens rejected
    assert seq.state.cache_length == 5 and seq.state.pending == 11
    for (keys, values), layer in zip(before, seq.state.cache.layers):
        assert torch.equal(keys, layer.keys) and torch.equal(values, layer.values)
    assert torch.equal(seq.predict_after([10, 11]), committed_two().predict_after([10, 11]))


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) % 2 ** 64
    return h


def test_prefix_hash_is_documented_fnv1a_over_int32_le():
    assert _fnv1a64(b"a") == 0xAF63DC4C8601EC8C          # published FNV-1a 64 test vector
    tokens = [0, 1, 255, 256, 49151, 2 ** 31 - 1]
    assert prefix_hash(tokens) == _fnv1a64(struct.pack(f"<{len(tokens)}i", *tokens))
    assert prefix_hash([]) == FNV_OFFSET
    committed = CommittedPrefix()
    committed.append(tokens)
    assert [committed.hash(n) for n in range(len(tokens) + 1)] == \
        [prefix_hash(tokens[:n]) for n in range(len(tokens) + 1)]
    assert committed.names(3, prefix_hash(tokens[:3])) and not committed.names(3, 1)


def test_prefix_hash_is_the_same_in_another_process():
    code = "from spec_vlm_control.core.prefix import prefix_hash; print(prefix_hash([7, 8, 9]))"
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert int(out.stdout) == prefix_hash([7, 8, 9])


def test_candidate_exit_head_scores_only_its_candidates():
    target = tiny_llama(seed=4)
    head = ExitHead(0, target.norm, target.lm_head)
    hidden = torch.randn(3, target.hidden_size, dtype=torch.float64)
    full = head(hidden)
    candidates = torch.tensor([2, 5, int(full[0].argmax())])
    part = head(hidden, candidates)
    assert torch.allclose(part[:, candidates], full[:, candidates])
    outside = torch.ones(target.vocab_size, dtype=torch.bool)
    outside[candidates] = False
    assert torch.isinf(part[:, outside]).all()
    assert int(part[0].argmax()) == int(full[0].argmax())
