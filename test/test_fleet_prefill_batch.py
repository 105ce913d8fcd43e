"""Prompt prefills share the batched pass: a chunk of a new robot's prompt (image features
and M-RoPE positions placed when its sequence began) is fed in the same target pass as the
other sessions' blocks and steps, changes none of their outputs, and a prefill that fails
ends only its own session. The fleet-level losslessness with robots joining mid-run (their
image prefills mixed into the others' passes) is test_fleet_batch.py's fleet test."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from engine_pairs import MAX_NEW, llama_pair, qwen2vl_pair
from test_fleet_batch import cloud_led_requests, fleet_cloud

from spec_vlm_control.core.batch import prefill_microbenchmark, prefill_width
from spec_vlm_control.core.cloud import CloudConfig
from spec_vlm_control.core.models.synthetic import random_prompt
from spec_vlm_control.core.protocol import (MODES, CommittedTokens, DecodeError,
                                            DecodeRequest, DecodingParams, Handshake)


def test_a_prompt_chunk_in_a_batched_pass_changes_no_row():
    """Qwen2-VL, float64: two sequences verify blocks while a third's image prompt is fed
    in the same passes; the blocks' logits and every layer's hidden states are what they are
    alone, and the chunked prompt gives the cache of a whole prefill."""
    torch.set_num_threads(1)
    pairs = [qwen2vl_pair(s) for s in (0, 2, 4)]
    adapter = pairs[0].target
    blocks = [[5, 6, 7, 8], [9]]
    alone = [adapter.prefill(p.prompt) for p in pairs[:2]]
    batch = [adapter.prefill(p.prompt) for p in pairs[:2]]
    seen_alone: dict = {}
    expected = [adapter.extend(state, block, lambda layer, h, b=b: seen_alone.__setitem__(
        (b, layer), h.clone())) for b, (state, block) in enumerate(zip(alone, blocks))]
    joining = adapter.begin(pairs[2].prompt)
    unfed = len(joining.unfed)
    seen: dict = {}
    got = adapter.extend_batch(batch, blocks, lambda b, layer, h: seen.__setitem__(
        (b, layer), h.clone()), chunks=[(joining, 40)])
    assert len(got) == 2 and len(joining.unfed) == unfed - 40
    for b in range(2):
        assert torch.allclose(got[b], expected[b], atol=1e-10, rtol=0)
    assert seen.keys() == seen_alone.keys()           # no hook call for the prompt's row
    assert all(torch.allclose(seen[k], seen_alone[k], atol=1e-10, rtol=0) for k in seen)
    for state, block in zip(batch, blocks):           # the rest of the prompt, beside steps
        adapter.crop(state, state.cache_length - len(block), state.pending)
    adapter.extend_batch(batch, [[], []], chunks=[(joining, unfed)])
    assert joining.unfed is None
    whole = adapter.prefill(pairs[2].prompt)
    assert joining.cache_length == whole.cache_length
    assert torch.allclose(adapter.extend(joining, [3, 4]), adapter.extend(whole, [3, 4]),
                          atol=1e-10, rtol=0)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(fed=st.lists(st.integers(1, 8), max_size=8),
       prompts=st.lists(st.integers(1, 400), min_size=1, max_size=3),
       budget=st.integers(8, 512), max_padding=st.sampled_from([0.0, 0.25, 0.5, 0.9]))
def test_a_prompt_chunk_is_the_widest_that_keeps_padding_bounded(fed, prompts, budget,
                                                                  max_padding):
    width = prefill_width(fed, prompts, budget, max_padding)
    rows, floor = len(fed) + len(prompts), max(fed, default=1)

    def padding(w: int) -> float:
        return 1 - (sum(fed) + sum(min(n, w) for n in prompts)) / (rows * w)
    assert width >= floor
    if width > floor:                  # wider than the pass is anyway: within both bounds
        assert rows * width <= budget and padding(width) <= max_padding + 1e-12
    wider = width + 1                  # and no wider width would do
    assert wider > min(max(prompts), budget // rows) or padding(wider) > max_padding


def joining_fleet():
    """Three robots stream (cloud-led, 1-position rows) when two join: "long" with a
    60-token prompt and "bad" whose prompt cannot be built (cost model, virtual time)."""
    torch.set_num_threads(1)
    pairs = [llama_pair(s) for s in (0, 2, 4)]
    target = pairs[0].target
    prompts = {i: p.prompt for i, p in enumerate(pairs)}
    prompts[3] = random_prompt(9, target.vocab_size, length=60)

    def prompt_for(request):
        if request.request_id == 4:
            raise ValueError("undecodable image")
        return prompts[request.request_id]
    config = CloudConfig(tokenizer_hash=target.fingerprint(), pass_token_budget=32)
    cloud = fleet_cloud(target, prompts, config)
    cloud.prompt_for = prompt_for
    sent = []
    cloud.send = sent.append
    cloud_led_requests(cloud, pairs, ["a", "b", "c"])
    for _ in range(3):
        cloud.work()
    params = DecodingParams(mode=MODES["cloud_led"], block_size=1, max_new_tokens=MAX_NEW)
    for request_id, robot in ((3, "long"), (4, "bad")):
        cloud.receive(DecodeRequest(robot, request_id, params=params, handshake=Handshake(
            tokenizer_hash=target.fingerprint())))
    return cloud, sent, pairs


def test_a_joining_prompt_is_in_within_max_wait_of_its_arrival():
    """Beside 1-position rows the padding bound allows 1-position chunks; once the prompt
    has waited max_wait_ms it takes its share of the budget while the others still run."""
    cloud, _, _ = joining_fleet()
    due = cloud.clock.now() + cloud.config.max_wait_ms / 1000
    joining = cloud.sessions[("long", 3)]
    passes = []
    while joining.seq is None or joining.seq.unfed:
        cloud.work()
        passes.append(cloud.log.passes[-1])
    assert passes[0].width == 1                              # beside the streaming rows
    first_due = next(p for p in passes if p.start >= due)
    assert (first_due.rows, first_due.width) == (4, 32 // 4)


def test_a_failing_prefill_ends_only_its_session():
    """Of the two robots joining three streaming ones, the one whose prompt cannot be built
    ends BAD_REQUEST, and the one whose prompt chunk raises inside a shared pass (its cache
    is corrupted after its first chunk) ends INTERNAL: that pass is re-run one session at a
    time; the others get the target's own greedy answer."""
    cloud, sent, pairs = joining_fleet()
    joining = cloud.sessions[("long", 3)]
    while joining.seq is None or joining.seq.unfed == 59:
        cloud.work()
    assert 0 < joining.seq.unfed < 59
    poisoned = joining.seq.state.cache.layers[1]
    poisoned.keys = poisoned.keys[:, :1]              # a head missing in one layer
    passes = len(cloud.log.passes)
    while cloud.has_work():
        cloud.work()
    errors = [(m.robot_id, m.code) for m in sent if isinstance(m, DecodeError)]
    assert sorted(errors) == [("bad", DecodeError.CODE_BAD_REQUEST),
                              ("long", DecodeError.CODE_INTERNAL)]
    failed = cloud.log.passes[passes]                 # the pass that raised was shared
    assert failed.prompts == 1 and failed.rows > 1
    for i, robot in enumerate("abc"):
        tokens = [t for m in sent if isinstance(m, CommittedTokens) and m.robot_id == robot
                  for t in m.tokens]
        assert tokens == pairs[i].reference, robot


@pytest.mark.parametrize("family", ["llama", "qwen2vl"])
def test_prefill_microbenchmark_reports_the_three_plans(family):
    torch.set_num_threads(1)
    pair = (llama_pair if family == "llama" else qwen2vl_pair)(3)
    r = prefill_microbenchmark(pair.target, pair.prompt, blocks=3, positions=2, budget=16,
                               prompt_length=6, repeats=1)
    assert r["prompt_positions"] == pair.prompt.input_ids.shape[1] - 1
    assert r["separate_padding"] == 0.0 < r["one_pass_padding"]
    assert r["scheduled_padding"] <= r["one_pass_padding"]
    assert all(r[f"{plan}_s"] > 0 for plan in ("separate", "one_pass", "scheduled"))
