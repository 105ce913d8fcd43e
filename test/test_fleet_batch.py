"""The batched cloud: one target pass for many sessions stays lossless, isolates a faulty
session, and its scheduler starves no one.

Model layer: a batched pass over ragged rows gives every row what it gets alone (logits,
every layer's hidden states for the exit heads, and a cache that still crops exactly), for
Llama, Qwen2-VL with M-RoPE and images, and Mistral's sliding window. Cloud: robots of mixed
modes, k, prompts and start times decode against one batched CloudVerifier and each gets the
target's own greedy answer (HF generate, float64); the same holds one session per pass.
"""
from __future__ import annotations

import pytest
import torch
from engine_pairs import MAX_NEW, llama_pair, qwen2vl_pair
from test_models_sliding_window import mistral

from spec_vlm_control.core.batch import PassLog, microbenchmark
from spec_vlm_control.core.clock import CostedAdapter, ManualClock
from spec_vlm_control.core.cloud import CloudConfig, CloudVerifier
from spec_vlm_control.core.decode import Costs, build, mode_setup, run_requests
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.models.synthetic import MixtureDraft, random_prompt
from spec_vlm_control.core.protocol import (Cancel, CommittedTokens, DecodeError, DecodeRequest,
                                            DecodingParams, Handshake, MODES)
from spec_vlm_control.core.target_pass import TargetPass

COSTS = Costs()
EDGE = EdgeConfig(pipeline_depth=3, lead_blocks=1)


@pytest.mark.parametrize("family", ["llama", "qwen2vl", "sliding"])
def test_a_batched_pass_gives_each_row_what_it_gets_alone(family):
    torch.set_num_threads(1)
    if family == "sliding":
        adapter = mistral(0)
        prompts = [random_prompt(s, 96, length=n) for s, n in ((1, 29), (2, 3), (3, 12))]
    else:
        pairs = [(llama_pair if family == "llama" else qwen2vl_pair)(s) for s in (0, 2, 4)]
        adapter, prompts = pairs[0].target, [p.prompt for p in pairs]
    blocks = [[5, 6, 7, 8], [], [9, 10]]                     # ragged: 5, 1 and 3 positions
    alone, batch = ([adapter.prefill(p) for p in prompts] for _ in range(2))
    seen_alone: dict = {}
    expected = [adapter.extend(state, block, lambda layer, h, b=b: seen_alone.__setitem__(
        (b, layer), h.clone())) for b, (state, block) in enumerate(zip(alone, blocks))]
    seen: dict = {}
    got = adapter.extend_batch(batch, blocks, lambda b, layer, h: seen.__setitem__((b, layer),
                                                                                  h.clone()))
    for b in range(3):
        assert torch.allclose(got[b], expected[b], atol=1e-10, rtol=0)
        assert batch[b].cache_length == alone[b].cache_length
    assert seen.keys() == seen_alone.keys()
    assert all(torch.allclose(seen[k], seen_alone[k], atol=1e-10, rtol=0) for k in seen)
    # every row's own cache crops exactly: roll back a rejected draft and go on, batched
    for state, block in zip(batch + alone, blocks + blocks):
        adapter.crop(state, state.cache_length - len(block), block[0] if block else state.pending)
    again = adapter.extend_batch(batch, [[11], [12, 13], []])
    for b, tokens in enumerate([[11], [12, 13], []]):
        assert torch.allclose(again[b], adapter.extend(alone[b], tokens), atol=1e-10, rtol=0)


def test_a_chunked_prompt_gives_the_prefilled_cache():
    torch.set_num_threads(1)
    pair = qwen2vl_pair(0)
    whole = pair.target.prefill(pair.prompt)
    chunked = pair.target.begin(pair.prompt)
    while chunked.unfed is not None:
        pair.target.feed_prompt(chunked, 32)
    assert chunked.cache_length == whole.cache_length
    assert torch.allclose(pair.target.extend(chunked, [3]), pair.target.extend(whole, [3]),
                          atol=1e-10, rtol=0)


class LateLink:
    """The uplink of robots named late*: their requests and blocks arrive `delay` later
    (a robot that joins mid-run)."""

    def __init__(self, delay: float):
        self.delay = delay

    def transmit(self, message, sent_at: float) -> list[float]:
        return [sent_at + (self.delay if message.robot_id.startswith("late") else 0.0)]


def fleet_cloud(target, prompts: dict, config: CloudConfig, exit_layers=(0,)):
    clock = ManualClock()
    costed = CostedAdapter(target, clock, COSTS.target_pass, COSTS.target_token)
    return CloudVerifier(costed, lambda request: prompts[request.request_id], clock,
                         config=config, target_pass=TargetPass.with_layers(costed, exit_layers))


# (mode, k, draft agreement, robot): every mode, k 1..5, late joiners
FLEET = [("plain", 3, 0.85, "r"), ("preemptive", 2, 0.6, "r"), ("pipelined", 4, 1.0, "late"),
         ("cloud_led", 5, 0.85, "r"), ("stream", 0, 0.0, "late"), ("plain", 1, 0.3, "r"),
         ("early_exit", 5, 0.6, "late")]


def run_fleet(factory, seeds, batch_sessions: int):
    pairs = [factory(seed) for seed in seeds]
    config = CloudConfig(tokenizer_hash=pairs[0].target.fingerprint(),
                         max_batch_sessions=batch_sessions, max_sessions_per_robot=8)
    cloud = fleet_cloud(pairs[0].target, {i: p.prompt for i, p in enumerate(pairs)}, config)
    edges = []
    for i, (pair, (mode, k, agreement, robot)) in enumerate(zip(pairs, FLEET)):
        params, edge_config = mode_setup(mode, max(k, 1), MAX_NEW)
        if mode != "stream":
            edge_config = EDGE
        params = DecodingParams(**{**params.__dict__, "seed": i})
        edge, _ = build(pair.target, pair.draft(agreement, seeds[i]), pair.prompt, params,
                        cloud=cloud, request_id=i, robot_id=f"{robot}{i}", edge_config=edge_config)
        edges.append(edge)
    outcomes = run_requests(edges, cloud, uplink=LateLink(0.05))
    return pairs, outcomes, cloud


@pytest.mark.parametrize("family, seeds", [("llama", (0, 2, 4, 6, 8, 10, 12)),
                                           ("qwen2vl", (0, 2, 4, 6, 8))])
def test_every_robot_gets_the_targets_answer_in_a_batch(family, seeds):
    torch.set_num_threads(1)
    factory = llama_pair if family == "llama" else qwen2vl_pair
    for batch_sessions in (8, 1):
        pairs, outcomes, cloud = run_fleet(factory, seeds, batch_sessions)
        for pair, out, fleet in zip(pairs, outcomes, FLEET):
            assert out.stats.ok, (fleet, out.stats.error)
            assert out.tokens == pair.reference, fleet
        rows = [p.rows for p in cloud.log.passes]
        if batch_sessions == 1:
            assert max(rows) == 1
        else:   # sessions really shared passes, of different widths (ragged rows), and
            assert max(rows) >= 3, rows      # late robots' prompt chunks joined others' passes
            assert len({p.width for p in cloud.log.passes if p.rows > 1}) > 1
            assert any(0 < p.prompts < p.rows for p in cloud.log.passes)


def cloud_led_requests(cloud, pairs, robots):
    for i, (pair, robot) in enumerate(zip(pairs, robots)):
        params = DecodingParams(mode=MODES["cloud_led"], block_size=1, max_new_tokens=MAX_NEW)
        cloud.receive(DecodeRequest(robot, i, params=params, handshake=Handshake(
            tokenizer_hash=pair.target.fingerprint())))


def drain(cloud):
    while cloud.has_work():
        cloud.work()


def test_a_poisoned_session_fails_alone():
    """Four robots in one batch; one session's cache is corrupted after it was admitted:
    the batch raises, its sessions run again one at a time, only that one fails."""
    torch.set_num_threads(1)
    pairs = [llama_pair(s) for s in (0, 2, 4, 6)]
    sent = []
    config = CloudConfig(tokenizer_hash=pairs[0].target.fingerprint())
    cloud = fleet_cloud(pairs[0].target, {i: p.prompt for i, p in enumerate(pairs)}, config)
    cloud.send = sent.append
    cloud_led_requests(cloud, pairs, ["a", "b", "c", "d"])
    while any(cloud._prefilling(s) for s in cloud.sessions.values() if not s.finished):
        cloud.work()                                  # until all four are prefilled
    poisoned = cloud.sessions[("c", 2)].seq.state.cache.layers[1]
    poisoned.keys = poisoned.keys[:, :1]              # a head missing in one layer
    drain(cloud)
    errors = [m for m in sent if isinstance(m, DecodeError)]
    assert [(e.robot_id, e.code) for e in errors] == [("c", DecodeError.CODE_INTERNAL)]
    for i, robot in ((0, "a"), (1, "b"), (3, "d")):
        tokens = [t for m in sent if isinstance(m, CommittedTokens) and m.robot_id == robot
                  for t in m.tokens]
        assert tokens == pairs[i].reference, robot
    assert max(p.rows for p in cloud.log.passes) == 4


def test_a_session_cancelled_during_a_batched_pass_touches_no_other():
    """A Cancel handled while its session's row is in the pass (here: as soon as that
    session's first token is streamed, re-entrantly): it gets nothing more, the others
    finish with the target's answer."""
    torch.set_num_threads(1)
    pairs = [llama_pair(s) for s in (0, 2, 4, 6)]
    sent = []
    config = CloudConfig(tokenizer_hash=pairs[0].target.fingerprint())
    cloud = fleet_cloud(pairs[0].target, {i: p.prompt for i, p in enumerate(pairs)}, config)

    def send(message):
        sent.append(message)
        if isinstance(message, CommittedTokens) and message.robot_id == "a" and \
                message.start == 2:
            cloud.receive(Cancel("a", 0))
    cloud.send = send
    cloud_led_requests(cloud, pairs, ["a", "b", "c", "d"])
    drain(cloud)
    streamed = {r: [t for m in sent if isinstance(m, CommittedTokens) and m.robot_id == r
                    for t in m.tokens] for r in "abcd"}
    assert streamed["a"] == pairs[0].reference[:3]
    assert cloud.sessions[("a", 0)].gone == "cancelled"
    for i, robot in enumerate("bcd", start=1):
        assert streamed[robot] == pairs[i].reference


def test_a_long_prompt_starves_no_one():
    """One robot with a long prompt joins three normal ones (cost model, virtual time): with
    prefills chunked to fit pass_token_budget and yielding to other work, no normal session
    waits longer than max_wait_ms for a pass once it decodes, and no pass (which holds
    them, whether they are in it or wait for it) lasts longer; one unchunked prefill would
    hold them its whole length."""
    torch.set_num_threads(1)
    target = llama_pair(0).target
    prompts = {0: random_prompt(7, target.vocab_size, length=400),
               **{i: llama_pair(2 * i).prompt for i in (1, 2, 3)}}

    def normal_waits(budget: int) -> list[float]:
        config = CloudConfig(tokenizer_hash=target.fingerprint(), pass_token_budget=budget,
                             max_wait_ms=50.0)
        cloud = fleet_cloud(target, prompts, config)
        edges = []
        for i in range(4):
            params, edge_config = mode_setup("stream", 1, MAX_NEW)
            edge, _ = build(target, MixtureDraft(target, 0.0), prompts[i], params, cloud=cloud,
                            request_id=i, robot_id=("late" if i == 0 else "r") + str(i),
                            edge_config=edge_config)
            edges.append(edge)
        for out in run_requests(edges, cloud, uplink=LateLink(0.03)):   # it joins mid-run
            assert out.stats.ok
        summary = cloud.log.summary(cloud.clock.now(), 1e9)
        assert summary["batch_size"] > 1 and 0 < summary["busy_fraction"] <= 1
        longest = max(p.end - p.start for p in cloud.log.passes)
        return [cloud.sessions[("r%d" % i, i)].counts["max_wait_s"] for i in (1, 2, 3)], longest

    waits, longest = normal_waits(64)
    assert max(waits) <= 0.050 and longest <= 0.050
    assert normal_waits(4096)[1] > 0.050            # what chunking prevents


def test_pass_log_summary_and_microbenchmark_report_what_they_measure():
    log = PassLog()
    log.record(0.0, 0.5, [0.01, 0.02], [5, 3])
    log.record(0.5, 1.0, [0.2], [0])
    s = log.summary(1.0, 2.0)
    assert s["batch_size"] == 1.5 and s["busy_fraction"] == 0.5
    assert s["padding_fraction"] == pytest.approx(0.2) and s["queue_wait_p99_ms"] == 200.0
    rows = microbenchmark(llama_pair(0).target, shapes=((3, 2),), prompt_length=6, repeats=3)
    assert [(r["sessions"], r["positions"]) for r in rows] == [(3, 2)]
    assert rows[0]["batched_s"] > 0 and rows[0]["one_per_pass_s"] > 0


def test_the_gpu_pass_check_writes_what_it_measured(tmp_path):
    """tools/gpu_pass_check.py, the per-pass check for a machine with a GPU, run here on the
    CPU at a toy width: one row per (prompt, sessions, positions), with its configuration."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "tools" / "gpu_pass_check.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "pass"), "--device",
                    "cpu", "--dtype", "float32", "--hidden", "32", "--layers", "1", "--heads",
                    "2", "--vocab", "64", "--sessions", "1", "3", "--prompt-lengths", "6",
                    "--repeats", "1"], check=True, capture_output=True, timeout=120)
    result = json.loads((tmp_path / "pass.json").read_text())
    assert [(r["prompt_length"], r["sessions"], r["positions"]) for r in result["rows"]] == [
        (6, 1, 5), (6, 3, 5), (6, 1, 1), (6, 3, 1)]
    assert all(r["batched_s"] > 0 and r["one_per_pass_s"] > 0 for r in result["rows"])
    assert result["config"]["hidden"] == 32 and result["machine"]["torch"] == torch.__version__
    assert (tmp_path / "pass.md").read_text().count("\n| 6 |") == 4
