"""The protocol around the verdict: early verdicts, exit adapters, predicted round counts,
the cloud's session handling, lossy links, streaming and stopping."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine_pairs import MAX_NEW, llama_pair
from spec_vlm_control.core.clock import ManualClock
from spec_vlm_control.core.cloud import CloudConfig, CloudVerifier
from spec_vlm_control.core.decode import Costs, build, decode, run_request, run_requests
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.exit_head import ExitHead
from spec_vlm_control.core.link import LinkEmulator
from spec_vlm_control.core.models.synthetic import MixtureDraft
from spec_vlm_control.core.prefix import prefix_hash
from spec_vlm_control.core.protocol import (MODES, Cancel, CommittedTokens, DecodeError,
                                            DecodeRequest, DecodingParams, DraftBlock,
                                            Handshake, PROTOCOL_VERSION, Verdict)
from spec_vlm_control.core.verdict import VerdictRule
from spec_vlm_control.core.sampling import RandomStream

torch.set_num_threads(1)
PLAIN, PREEMPTIVE = MODES["plain"], MODES["preemptive"]


def full_length_pair():
    """A pair whose reference runs to MAX_NEW tokens without EOS (round counts are exact)."""
    for seed in range(50):
        pair = llama_pair(seed)
        if len(pair.reference) == MAX_NEW and 1 not in pair.reference:
            return pair
    raise AssertionError("no full-length reference")


@pytest.mark.parametrize("k", [1, 3, 5])
def test_always_and_never_agreeing_drafts_take_the_predicted_rounds(k):
    pair = full_length_pair()
    n = MAX_NEW
    params = DecodingParams(mode=PLAIN, block_size=k, max_new_tokens=n)
    always = decode(pair.target, MixtureDraft(pair.target, 1.0), pair.prompt, params)
    rounds = math.ceil(n / (k + 1))
    last = n - (rounds - 1) * (k + 1) - 1          # the last block is cut to fit max tokens
    assert always.tokens == pair.reference
    assert always.stats.rounds == always.stats.target_passes == rounds
    assert always.edge.tally.accepted_counts == ({k: rounds - 1, last: 1} if last != k
                                                 else {k: rounds})
    never = decode(pair.target, MixtureDraft(pair.target, 0.0), pair.prompt, params)
    assert never.tokens == pair.reference
    assert never.stats.rounds == never.stats.target_passes == n
    assert never.edge.tally.accepted_counts == {0: n}


@pytest.mark.parametrize("k", [2, 4])
def test_an_accepted_end_token_counts_as_accepted(k):
    """The target accepts the always-agreeing draft's end token too; the verdict carries it
    as its next token (Judgement.clipped), and the tally still counts it as accepted."""
    pair = next(p for p in map(llama_pair, range(50)) if 1 in p.reference)
    params = DecodingParams(mode=PLAIN, block_size=k, max_new_tokens=MAX_NEW)
    out = decode(pair.target, MixtureDraft(pair.target, 1.0), pair.prompt, params)
    assert out.tokens == pair.reference
    tally = out.edge.tally
    assert tally.accepted == tally.drafted_tokens == sum(n for n, _ in tally.blocks)
    assert all(accepted == n for n, accepted in tally.blocks)
    assert tally.blocks[-1][0] == (len(pair.reference) - 1) % (k + 1) + 1  # ends at the EOS


def _recording(edge):
    seen = []
    receive = edge.receive

    def record(message):
        seen.append((edge.clock.now(), message))
        receive(message)
    edge.receive = record
    return seen


def test_early_verdict_comes_first_from_the_exit_layer():
    pair = full_length_pair()
    params = DecodingParams(mode=PREEMPTIVE, block_size=3, max_new_tokens=MAX_NEW)
    edge, cloud = build(pair.target, MixtureDraft(pair.target, 0.6), pair.prompt, params,
                        exit_layers=[0])
    seen = _recording(edge)
    blocks = []
    cloud_receive = cloud.receive
    cloud.receive = lambda m: (blocks.append(m), cloud_receive(m))
    out = run_request(edge, cloud)
    assert out.tokens == pair.reference
    verdicts = [(t, m) for t, m in seen if isinstance(m, Verdict)]
    finals = [(t, m) for t, m in verdicts if m.stage == Verdict.STAGE_FINAL]
    assert finals
    for t_final, final in finals:
        early = [(t, m) for t, m in verdicts if m.stage == Verdict.STAGE_EARLY
                 and m.round == final.round]
        assert len(early) == 1 and early[0][1].exit_layer == 0 and early[0][0] < t_final
    # the first early verdict is what the layer-0 exit head says about the first block
    first = next(m for m in blocks if isinstance(m, DraftBlock))
    ids = torch.cat([pair.prompt.input_ids, torch.tensor([first.tokens])], 1)
    with torch.no_grad():
        hidden = pair.target.model(ids, output_hidden_states=True).hidden_states[1][0]
    head = ExitHead(0, pair.target.norm, pair.target.lm_head)
    rows = head(hidden[-len(first.tokens) - 1:])
    expected = VerdictRule(params, RandomStream(0, 1)).judge(rows, first.tokens, None, 0)
    early = next(m for _, m in verdicts if m.stage == Verdict.STAGE_EARLY and m.round == first.round)
    assert (early.accepted, early.next_token) == (expected.accepted, expected.next_token)


def test_trained_exit_adapter_changes_early_verdicts_never_the_output():
    pair = full_length_pair()
    params = DecodingParams(mode=PREEMPTIVE, block_size=3, max_new_tokens=MAX_NEW)
    adapter = ExitHead.new_adapter(pair.target.hidden_size, torch.float64)
    torch.manual_seed(5)
    nn.init.normal_(adapter.weight, std=1.0)          # a "trained" (non-identity) adapter
    early = {}
    for name, adapters in (("identity", None), ("trained", {0: adapter})):
        edge, cloud = build(pair.target, MixtureDraft(pair.target, 0.6), pair.prompt, params,
                            exit_layers=[0], exit_adapters=adapters)
        seen = _recording(edge)
        assert run_request(edge, cloud).tokens == pair.reference
        early[name] = [(m.assumed_length, m.accepted, m.next_token) for _, m in seen
                       if isinstance(m, Verdict) and m.stage == Verdict.STAGE_EARLY]
    assert early["identity"] and early["trained"] and early["identity"] != early["trained"]


@pytest.mark.parametrize("mode", sorted(MODES) + ["stream"])
def test_lossy_link_still_gives_the_targets_output_in_bounded_time(mode):
    """Every mode, and cloud-only streaming (cloud_led, no drafts: only its resent catch-up
    request recovers a lost commit)."""
    config = EdgeConfig(resend_after_s=0.05, deadline_s=20.0, drafting=mode != "stream")
    for seed in range(4):
        pair = llama_pair(seed)
        params = DecodingParams(mode=MODES.get(mode, MODES["cloud_led"]), block_size=3,
                                max_new_tokens=MAX_NEW)
        links = [LinkEmulator(latency_s=0.002, jitter_s=0.004, loss=0.2, duplicate=0.2,
                              reorder=0.2, reorder_delay_s=0.01, seed=seed * 2 + i)
                 for i in range(2)]
        out = decode(pair.target, MixtureDraft(pair.target, 0.7, seed), pair.prompt, params,
                     uplink=links[0], downlink=links[1], exit_layers=[0], edge_config=config)
        assert out.stats.ok, out.stats.error
        assert out.tokens == pair.reference
        assert out.stats.total_s < config.deadline_s
        assert links[0].lost + links[1].lost > 0 and links[0].duplicated + links[1].duplicated > 0


def test_a_dead_link_fails_at_the_deadline_instead_of_hanging():
    pair = llama_pair(0)
    config = EdgeConfig(resend_after_s=0.1, deadline_s=2.0)
    out = decode(pair.target, MixtureDraft(pair.target, 0.7), pair.prompt,
                 DecodingParams(mode=PLAIN, block_size=3, max_new_tokens=MAX_NEW),
                 uplink=LinkEmulator(loss=1.0), edge_config=config)
    assert not out.stats.ok and "deadline" in out.stats.error
    assert out.stats.total_s == pytest.approx(config.deadline_s, abs=0.2)
    assert out.tokens == [] and out.edge.tally.request_resends >= 10     # it kept asking


def test_streamed_tokens_are_final_in_order_and_stop_on_action_complete():
    pair = full_length_pair()
    chunks = []
    out = decode(pair.target, MixtureDraft(pair.target, 0.6), pair.prompt,
                 DecodingParams(mode=MODES["pipelined"], block_size=3, max_new_tokens=MAX_NEW),
                 exit_layers=[0], on_tokens=lambda tokens, final: chunks.append((tokens, final)))
    assert [t for c, _ in chunks for t in c] == out.tokens == pair.reference
    assert [f for _, f in chunks] == [False] * (len(chunks) - 1) + [True]
    stop = decode(pair.target, MixtureDraft(pair.target, 0.6), pair.prompt,
                  DecodingParams(mode=PLAIN, block_size=3, max_new_tokens=MAX_NEW),
                  action_complete=lambda tokens: len(tokens) >= 5)
    assert stop.stats.ok and 5 <= len(stop.tokens) < MAX_NEW
    assert stop.tokens == pair.reference[: len(stop.tokens)]
    assert stop.cloud.sessions[("go2", 1)].gone == "cancelled"  # the Cancel reached the cloud


def test_concurrent_sessions_keep_their_own_caches():
    pairs = [llama_pair(0), llama_pair(2)]                      # same target, other prompts
    assert pairs[0].target is pairs[1].target
    edges, cloud = [], None
    for i, pair in enumerate(pairs):
        params = DecodingParams(mode=MODES["cloud_led" if i else "pipelined"], block_size=2,
                                max_new_tokens=MAX_NEW)
        edge, cloud = build(pair.target, MixtureDraft(pair.target, 0.7, i), pair.prompt, params,
                            exit_layers=[0], request_id=10 + i, robot_id=f"go2-{i}", cloud=cloud)
        edges.append(edge)
    # one cloud, per-session prompts
    cloud.prompt_for = lambda request: pairs[request.request_id - 10].prompt
    outs = run_requests(edges, cloud, LinkEmulator(0.01, seed=1), LinkEmulator(0.01, seed=2))
    assert [o.tokens for o in outs] == [p.reference for p in pairs]
    assert {s.key for s in cloud.sessions.values()} == {("go2-0", 10), ("go2-1", 11)}


class _Cloud:
    """A CloudVerifier driven by hand: messages in, messages out."""

    def __init__(self, **config):
        self.pair = full_length_pair()
        self.clock = ManualClock()
        self.out = []
        self.cloud = CloudVerifier(self.pair.target, lambda r: self.pair.prompt, self.clock,
                                   send=self.out.append,
                                   config=CloudConfig(tokenizer_hash="tok", **config))

    def request(self, request_id=1, tokenizer="tok", version=PROTOCOL_VERSION, mode=PLAIN):
        self.cloud.receive(DecodeRequest("r", request_id, params=DecodingParams(
            mode=mode, block_size=3, max_new_tokens=MAX_NEW), handshake=Handshake(
                protocol_version=version, tokenizer_hash=tokenizer)))

    def block(self, tokens, length=0, prefix=(), round=1, request_id=1):
        self.cloud.receive(DraftBlock("r", request_id, round, length, prefix_hash(prefix),
                                      list(tokens)))

    def drain(self):
        while self.cloud.has_work():
            self.cloud.work()
        out, self.out[:] = list(self.out), []
        return out


def test_cloud_refuses_mismatched_pairs_and_overload():
    c = _Cloud(max_sessions=1)
    c.request(1, tokenizer="other")
    c.request(2, version=99)
    c.request(3)
    c.request(4)
    errors = [(m.request_id, m.code) for m in c.drain() if isinstance(m, DecodeError)]
    assert errors == [(1, DecodeError.CODE_HANDSHAKE), (2, DecodeError.CODE_HANDSHAKE),
                      (4, DecodeError.CODE_OVERLOADED)]
    assert list(c.cloud.sessions) == [("r", 3)]


def test_cloud_answers_duplicates_catches_up_old_prefixes_and_drops_stale_blocks():
    c = _Cloud()
    ref = c.pair.reference
    c.request()
    c.block(ref[:3])                                    # all right: 3 accepted + 1
    (verdict,) = c.drain()
    assert (verdict.stage, verdict.accepted, verdict.next_token) == (Verdict.STAGE_FINAL, 3, ref[3])
    c.block(ref[:3], round=7)                           # a resend: same verdict, its round
    (again,) = c.drain()
    assert again.round == 7 and (again.accepted, again.next_token) == (3, ref[3])
    c.block([ref[0], 0, 0], round=8)                    # old prefix, new tokens: catch-up
    (catch_up,) = c.drain()
    assert isinstance(catch_up, CommittedTokens) and catch_up.start == 0
    assert catch_up.tokens == ref[:4] and catch_up.hash_after == prefix_hash(ref[:4])
    c.block([5, 6], length=4, prefix=[9, 9, 9, 9])      # a prefix never committed: stale
    c.block(ref[6:8], length=6, prefix=ref[:6])         # a prefix not reached yet: waits
    assert c.drain() == []
    session = c.cloud.sessions[("r", 1)]
    assert session.counts["stale"] == 1 and [b.assumed_length for b in session.blocks] == [6]
    c.block(ref[4:5], length=4, prefix=ref[:4])         # fills the gap: both verify in turn
    verdicts = c.drain()
    assert [(v.assumed_length, v.accepted, v.next_token) for v in verdicts] == \
        [(4, 1, ref[5]), (6, 2, ref[8])]
    c.cloud.receive(Cancel("r", 1, "done"))
    assert session.finished and session.seq is None


def test_idle_sessions_expire():
    c = _Cloud(session_ttl_s=5.0)
    c.request(1)
    c.drain()
    c.clock.advance(6.0)
    c.request(2)
    assert list(c.cloud.sessions) == [("r", 2)]


def test_cloud_led_with_a_useless_draft_costs_about_what_streaming_costs():
    pair = llama_pair(1)
    params = DecodingParams(mode=MODES["cloud_led"], block_size=4, max_new_tokens=40)
    link = dict(latency_s=0.025)
    costs = Costs(target_pass=0.010, target_token=0.001, draft_pass=0.001)
    runs = {}
    for name, agreement, drafting in (("stream", 0.0, False), ("never", 0.0, True),
                                      ("always", 1.0, True)):
        runs[name] = decode(pair.target, MixtureDraft(pair.target, agreement), pair.prompt,
                            params, costs=costs, uplink=LinkEmulator(**link),
                            downlink=LinkEmulator(**link),
                            edge_config=EdgeConfig(drafting=drafting))
    assert runs["never"].tokens == runs["stream"].tokens == runs["always"].tokens
    stream = runs["stream"].stats.total_s
    assert runs["never"].stats.total_s <= 1.10 * stream
    assert runs["always"].stats.total_s < stream
    assert runs["always"].stats.target_passes < runs["stream"].stats.target_passes


def test_real_time_threads_run_the_same_sessions():
    """Edge and cloud on their own threads in real time (what the nodes do), joined by a
    thread-safe in-process link."""
    import time as _time
    from spec_vlm_control.core.clock import RealClock
    from spec_vlm_control.core.edge import EdgeSession
    from spec_vlm_control.core.realtime import ActorThread
    pair = full_length_pair()
    params = DecodingParams(mode=MODES["pipelined"], block_size=3, max_new_tokens=MAX_NEW)
    cloud = CloudVerifier(pair.target, lambda r: pair.prompt, RealClock(),
                          config=CloudConfig(tokenizer_hash=pair.target.fingerprint()))
    request = DecodeRequest("go2", 1, params=params,
                            handshake=Handshake(tokenizer_hash=pair.target.fingerprint()))
    edge = EdgeSession(pair.draft(0.7, 1), pair.prompt, request, RealClock(),
                       config=EdgeConfig(deadline_s=30.0))
    cloud_thread, edge_thread = ActorThread(cloud, "cloud"), ActorThread(edge, "edge")
    cloud.send, edge.send = edge_thread.deliver, cloud_thread.deliver
    cloud_thread.start()
    edge.start()                         # sends the request; the edge thread takes over
    edge_thread.start()
    deadline = _time.monotonic() + 30
    while not edge.done and _time.monotonic() < deadline:
        _time.sleep(0.01)
    edge_thread.stop()
    cloud_thread.stop()
    assert edge.done and not edge.error
    assert edge.tokens == pair.reference


def test_dataclasses_mirror_the_ros_messages():
    import dataclasses
    from pathlib import Path
    from spec_vlm_control.core import metrics, protocol
    # where a ROS type is unpacked into plain fields at the node boundary
    unpacked = {"header": ["stamp_ns"], "image": ["image_data", "image_format"]}
    for path in sorted((Path(__file__).parent.parent / "msg").glob("*.msg")):
        fields = []
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and "=" not in line:
                fields += unpacked.get(line.split()[1], [line.split()[1]])
        cls = getattr(protocol, path.stem, None) or getattr(metrics, path.stem)
        assert sorted(f.name for f in dataclasses.fields(cls)) == sorted(fields), path.stem


def test_verified_stream_numbers_chunks_and_decodes_whole_characters():
    from spec_vlm_control.core.verified_stream import VerifiedStream
    text = "go ü"
    data = list(text.encode())                         # ü is two byte tokens
    sent = []
    stream = VerifiedStream(7, sent.append, lambda ids: bytes(ids).decode(errors="replace"))
    for chunk, final in ((data[:3], False), (data[3:4], False), (data[4:], True)):
        stream(chunk, final)
    assert [m.seq for m in sent] == [0, 1, 2] and [m.final for m in sent] == [False, False, True]
    assert [t for m in sent for t in m.token_ids] == data
    assert [m.text_delta for m in sent] == ["go ", "", "ü"]


def test_cloud_led_chains_stay_within_the_clouds_block_limit():
    """A long lead (large k, a slow link) is still sent as blocks the cloud accepts: the
    chain beyond the known prefix never exceeds MAX_BLOCK_TOKENS."""
    from spec_vlm_control.core.protocol import MAX_BLOCK_TOKENS
    pair = llama_pair(1)
    params = DecodingParams(mode=MODES["cloud_led"], block_size=24, max_new_tokens=150)
    link = dict(latency_s=0.1)
    edge, cloud = build(pair.target, MixtureDraft(pair.target, 1.0), pair.prompt, params,
                        costs=Costs(target_pass=0.001, draft_pass=0.0001))
    ahead = []                         # draft tokens beyond the edge's prefix, when sent
    send_block = edge.send_block

    def record(block):
        ahead.append(block.message.assumed_length + len(block.tokens) - len(edge.tokens))
        send_block(block)
    edge.send_block = record
    outcome = run_request(edge, cloud, LinkEmulator(**link), LinkEmulator(**link))
    assert outcome.stats.ok, outcome.stats.error
    assert len(ahead) > 1 and max(ahead) <= MAX_BLOCK_TOKENS   # (the chain stops at EOS)
    plain = decode(pair.target, MixtureDraft(pair.target, 1.0), pair.prompt,
                   DecodingParams(mode=PLAIN, block_size=4, max_new_tokens=150))
    assert outcome.tokens == plain.tokens
