"""Qwen2-VL / Qwen2.5-VL adapter: layer-by-layer decoding equals the model's own forward."""
import pytest
import torch

from spec_vlm_control.core.models.qwen2_vl import Qwen2VLAdapter
from tiny_models import (
    synthetic_image, tiny_image_processor, tiny_qwen2vl_model, tiny_qwen2vl_pair,
    tiny_qwen2vl_tokenizer)
from spec_vlm_control.core.prompts import Qwen2VLPrompts

torch.set_num_threads(1)

FAMILIES = ("qwen2_vl", "qwen2_5_vl")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_qwen2vl_tokenizer()


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return Qwen2VLPrompts(tokenizer, tiny_image_processor())


def reference(model, prompt, continuation=(), hidden_states=False):
    """The model's own full forward over prompt + continuation (no cache)."""
    ids = torch.cat([prompt.input_ids, torch.tensor([list(continuation)], dtype=torch.long)], 1)
    kwargs = dict(prompt.vision)
    if kwargs:
        kwargs["mm_token_type_ids"] = (ids == model.config.image_token_id).int()
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=hidden_states, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_prefill_layers_decode_and_crop_match_forward(family, dtype, tol, tokenizer, prompts):
    model = tiny_qwen2vl_model(tokenizer, seed=1, dtype=dtype, model_type=family)
    adapter = Qwen2VLAdapter(model)
    prompt = prompts.build("turn towards the blue box", synthetic_image(1))
    n = prompt.input_ids.shape[1]
    assert prompt.vision["image_grid_thw"].tolist() == [[1, 6, 6]]

    state = adapter.prefill(prompt)
    assert state.cache_length == n - 1 and state.extra["rope_delta"] != 0
    block = [70, 71, 72, 73, 74]
    layers = {}
    logits = adapter.extend(state, block, on_layer=lambda i, h: layers.__setitem__(i, h.clone()))
    ref = reference(model, prompt, block, hidden_states=True)
    assert logits.shape == (len(block) + 1, adapter.vocab_size)
    assert (logits - ref.logits[0, n - 1:]).abs().max() <= tol
    middle = adapter.num_layers // 2
    assert sorted(layers) == list(range(adapter.num_layers))
    # hidden_states[0] is the embedding output, so layer i's output is entry i + 1
    assert (layers[middle] - ref.hidden_states[middle + 1][0, n - 1:]).abs().max() <= tol

    # accept 2 of 5 drafts plus a correction token, then decode on from the cropped cache
    adapter.crop(state, n - 1 + 1 + 2, pending=99)
    assert state.cache.get_seq_length() == n + 2
    logits = adapter.extend(state, [100, 101])
    ref = reference(model, prompt, [70, 71, 99, 100, 101])
    assert (logits - ref.logits[0, n + 2:]).abs().max() <= tol


def test_sequences_keep_their_own_rope_delta(tokenizer, prompts):
    """Interleaved sequences with different images (and one without) never share state."""
    model = tiny_qwen2vl_model(tokenizer, seed=2)
    adapter = Qwen2VLAdapter(model)
    with_image = prompts.build("stop", synthetic_image(5))
    text_only = prompts.build("a longer instruction without any image")
    states = [adapter.prefill(with_image), adapter.prefill(text_only)]
    assert states[0].extra["rope_delta"] != states[1].extra["rope_delta"] == 0
    for step in range(3):
        for state, prompt in zip(states, (with_image, text_only)):
            logits = adapter.extend(state, [])
            ref = reference(model, prompt, range(40, 40 + step)).logits[0, -1:]
            assert (logits - ref).abs().max() <= 1e-12
            adapter.crop(state, state.cache_length, pending=40 + step)


def test_crop_refuses_to_grow(tokenizer, prompts):
    adapter = Qwen2VLAdapter(tiny_qwen2vl_model(tokenizer, seed=3))
    state = adapter.prefill(prompts.build("stop", synthetic_image(3)))
    with pytest.raises(ValueError):
        adapter.crop(state, state.cache_length + 1, pending=1)


def test_greedy_extend_decoding_equals_hf_generate_with_image():
    pair = tiny_qwen2vl_pair(seed=4)
    target, prompt = pair.target, pair.prompt
    state = target.prefill(prompt)
    ours = []
    for _ in range(24):
        token = int(target.extend(state, [])[-1].argmax())
        target.crop(state, state.cache_length, pending=token)
        ours.append(token)
    ids = prompt.input_ids
    with torch.no_grad():
        out = target.model.generate(
            input_ids=ids, mm_token_type_ids=(ids == target.image_token_id).int(),
            do_sample=False, max_new_tokens=24, min_new_tokens=24, **prompt.vision)
    assert ours == out[0, ids.shape[1]:].tolist()
    assert len(set(ours)) > 1


def test_pair_shares_tokenizer_and_differs_in_size():
    pair = tiny_qwen2vl_pair(seed=0)
    assert pair.target.fingerprint() == pair.draft.fingerprint() != ""
    assert pair.target.vocab_size == pair.draft.vocab_size == len(pair.tokenizer)
    assert pair.draft.num_layers < pair.target.num_layers
    assert pair.target.eos_token_ids == {pair.tokenizer.convert_tokens_to_ids("<|im_end|>")}


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_on_the_models_own_cached_path(family, tokenizer, prompts):
    """Same split into prefill / block / crop / step as the model's own cached forward:
    float64 logits and hidden states are bit-identical."""
    from transformers import DynamicCache
    from spec_vlm_control.core.models.base import crop_cache
    model = tiny_qwen2vl_model(tokenizer, seed=6, model_type=family)
    adapter = Qwen2VLAdapter(model)
    prompt = prompts.build("go to the red ball", synthetic_image(6))
    ids, n = prompt.input_ids, prompt.input_ids.shape[1]
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids[:, :-1], mm_token_type_ids=(ids[:, :-1] == model.config.image_token_id)
              .int(), cache=cache, use_cache=True, **prompt.vision)
        ref = model(input_ids=torch.tensor([[int(ids[0, -1]), 70, 71, 72]]), cache=cache,
                    use_cache=True, output_hidden_states=True)
        crop_cache(cache, n + 1)
        ref_step = model(input_ids=torch.tensor([[99]]), cache=cache, use_cache=True)
    state = adapter.prefill(prompt)
    layers = {}
    logits = adapter.extend(state, [70, 71, 72], on_layer=lambda i, h: layers.__setitem__(i, h))
    assert torch.equal(logits, ref.logits[0])
    # hidden_states[i + 1] is layer i's output; the last entry is taken after the final norm
    assert all(torch.equal(layers[i], ref.hidden_states[i + 1][0])
               for i in range(adapter.num_layers - 1))
    adapter.crop(state, n + 1, pending=99)
    assert torch.equal(adapter.extend(state, []), ref_step.logits[0])
