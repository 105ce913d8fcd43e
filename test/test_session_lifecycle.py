"""The cloud session's lifecycle, identity and memory, and the errors the edge acts on:
request ids that survive an edge restart, SESSION_GONE versus UNKNOWN_SESSION with the
cloud's epoch, cancelled and expired sessions, the cache bound as caches grow, per-robot
admission, bounded memory and inboxes."""
from __future__ import annotations

import collections
import io
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from rclpy.serialization import deserialize_message, serialize_message

from engine_pairs import MAX_NEW, llama_pair
from spec_vlm_control.core.clock import ManualClock, RealClock
from spec_vlm_control.core.cloud import CloudConfig, CloudVerifier
from spec_vlm_control.core.decode import build, decode, run_requests
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.link import LinkEmulator
from spec_vlm_control.core.models.base import DecoderAdapter
from spec_vlm_control.core.models.synthetic import MixtureDraft
from spec_vlm_control.core.prefix import prefix_hash
from spec_vlm_control.core.protocol import (MODES, PROTOCOL_VERSION, Cancel, CommittedTokens,
                                            DecodeError, DecodeRequest, DecodingParams,
                                            DraftBlock, Handshake, RequestIds, Verdict)
from spec_vlm_control.core.realtime import ActorThread
from spec_vlm_control.nodes.convert import from_ros, to_ros

torch.set_num_threads(1)
GONE, UNKNOWN = DecodeError.CODE_SESSION_GONE, DecodeError.CODE_UNKNOWN_SESSION


def over_the_wire(message):
    """The message as the other side receives it: through its ROS message and CDR."""
    msg = to_ros(message)
    return from_ros(deserialize_message(serialize_message(msg), type(msg)))


def wired(actor):
    receive = actor.receive
    actor.receive = lambda message: receive(over_the_wire(message))
    return actor


@pytest.mark.parametrize("mode", ["plain", "cloud_led"])
def test_a_restarted_edge_gets_its_own_answer_for_its_first_request(mode):
    """Both edges number from 1 behind their boot nonce; the cloud still remembers the first
    edge's finished request 1 when the restarted edge's request 1 arrives."""
    pairs = {1: llama_pair(0), 2: llama_pair(2)}                # same target, other prompts
    params = DecodingParams(mode=MODES[mode], block_size=3, max_new_tokens=MAX_NEW)
    prompts, cloud, outputs = {}, None, []
    for nonce, pair in pairs.items():
        request_id = RequestIds(nonce).next()
        prompts[request_id] = pair.prompt
        edge, cloud = build(pair.target, pair.draft(0.7, nonce), pair.prompt, params,
                            request_id=request_id, cloud=cloud)
        cloud.prompt_for = lambda request: prompts[request.request_id]
        (out,) = run_requests([wired(edge)], wired(cloud))
        outputs.append(out.tokens)
    first = cloud.sessions[("go2", RequestIds(1).next())]
    assert first.finished and not first.gone                    # remembered, completed
    assert outputs == [pairs[1].reference, pairs[2].reference]


class Wire:
    """An edge and a cloud joined by hand: what each sent waits in a list."""

    def __init__(self, mode="plain", config=None, agreement=0.7, epoch=None):
        self.pair = llama_pair(0)
        params = DecodingParams(mode=MODES[mode], block_size=3, max_new_tokens=MAX_NEW)
        self.edge, self.cloud = build(self.pair.target, self.pair.draft(agreement, 1),
                                      self.pair.prompt, params, cloud_config=config)
        if epoch is not None:
            self.cloud.epoch = epoch
        self.up, self.down, self.delivered = [], [], []
        self.edge.send, self.cloud.send = self.up.append, self.down.append
        self.edge.on_tokens = lambda tokens, final: self.delivered.extend(tokens)
        self.edge.start()

    def step(self, inject=()):
        """Deliver what is waiting (plus `inject` to the edge), one unit of work each."""
        up, self.up[:] = list(self.up), []
        for message in up:
            self.cloud.receive(message)
        if self.cloud.has_work():
            self.cloud.work()
        down, self.down[:] = list(self.down), []
        for message in [*down, *inject]:
            self.edge.receive(message)
        if not self.edge.has_work() and not self.cloud.has_work() and not self.up:
            clock = self.edge.clock                    # nothing to do: the edge's timers
            clock.start(max(clock.now(), min(self.edge.wake_time(), 1e9)))
        self.edge.work()

    def run(self, until=lambda: False, steps=2000):
        for _ in range(steps):
            if self.edge.done or until():
                return
            self.step()
        raise AssertionError("no end")


def test_unknown_session_is_ignored_from_the_serving_cloud_and_fatal_from_a_restarted_one():
    w = Wire()
    w.run(until=lambda: w.edge.tokens)
    edge, key = w.edge, ("go2", 1)
    assert edge.cloud_epoch == w.cloud.epoch and not edge.done
    edge.receive(DecodeError(*key, UNKNOWN, "no such session", w.cloud.epoch))
    assert not edge.done                           # answers a block that overtook its request
    edge.receive(DecodeError(*key, UNKNOWN, "no such session", w.cloud.epoch + 1))
    assert edge.done and "cloud error 4" in edge.error


def test_late_unknown_session_on_reordering_jittery_links_never_aborts_a_request():
    """A block that overtakes its request is answered UNKNOWN_SESSION; on a link that also
    delays that answer it arrives after the first verdict. Every run must still finish with
    the target's tokens."""
    config = EdgeConfig(resend_after_s=0.05, deadline_s=20.0)
    late = 0
    for seed in range(24):                             # cloud_led sends blocks earliest
        pair = llama_pair(seed % 4)
        mode = ("cloud_led", "pipelined", "cloud_led", "plain", "cloud_led", "preemptive")[seed % 6]
        params = DecodingParams(mode=MODES[mode], block_size=3, max_new_tokens=MAX_NEW)
        links = [LinkEmulator(latency_s=0.002, jitter_s=0.01, reorder=0.4, reorder_delay_s=0.05,
                              seed=seed * 2 + i) for i in range(2)]
        edge, cloud = build(pair.target, pair.draft(0.7, seed), pair.prompt, params,
                            edge_config=config)
        receive = edge.receive

        def counting(message, edge=edge, receive=receive):
            nonlocal late
            late += isinstance(message, DecodeError) and edge.cloud_epoch is not None
            receive(message)
        edge.receive = counting
        out = run_requests([edge], cloud, *links)[0]
        assert out.stats.ok, (seed, mode, out.stats.error)
        assert out.tokens == pair.reference
    assert late >= 3                                   # the case happened, repeatedly


@pytest.mark.parametrize("mode", ["plain", "cloud_led"])
def test_a_cancel_from_anyone_ends_the_session_as_gone_and_the_edge_fails(mode):
    w = Wire(mode, agreement=0.0)
    w.run(until=lambda: len(w.edge.tokens) >= 2)
    w.cloud.receive(Cancel("go2", 1, "spoofed"))
    w.run()
    assert w.edge.done and not w.edge.stats().ok and "cloud error 7" in w.edge.error
    assert w.delivered == w.pair.reference[: len(w.delivered)] and len(w.delivered) < MAX_NEW
    session = w.cloud.sessions[("go2", 1)]
    assert session.gone == "cancelled"
    block = DraftBlock("go2", 1, 99, 0, prefix_hash([]), [1, 2])
    w.cloud.receive(block)                                  # never a "finished" catch-up
    assert [(type(m), m.code) for m in w.down] == [(DecodeError, GONE)]


def _request(robot="r", request_id=1, max_new=MAX_NEW, mode="plain", image=b""):
    return DecodeRequest(robot, request_id, "go", image, "jpeg" if image else "",
                         DecodingParams(mode=MODES[mode], block_size=3, max_new_tokens=max_new),
                         Handshake(PROTOCOL_VERSION, "tok"))


def _cloud(clock=None, **config):
    pair = llama_pair(0)
    out = []
    cloud = CloudVerifier(pair.target, lambda r: pair.prompt, clock or ManualClock(),
                          send=out.append, config=CloudConfig(tokenizer_hash="tok", **config))
    return cloud, out, pair


def _drain(cloud):
    while cloud.has_work():
        cloud.work()


def test_idle_sessions_expire_with_no_message_arriving():
    cloud, out, pair = _cloud(session_ttl_s=5.0)
    cloud.receive(_request())
    _drain(cloud)
    assert cloud.wake_time() == pytest.approx(5.0)
    cloud.clock.advance(6.0)
    cloud.work()                                   # the worker woke: no message arrived
    assert not cloud.sessions and cloud.tombstones[("r", 1)] == "expired"
    assert [(m.code, m.reason) for m in out] == [(GONE, "session expired")]
    cloud.receive(DraftBlock("r", 1, 1, 0, prefix_hash([]), pair.reference[:3]))
    cloud.receive(DraftBlock("r", 2, 1, 0, prefix_hash([]), pair.reference[:3]))
    assert [m.code for m in out[1:]] == [GONE, UNKNOWN]   # known and dropped / never seen


def test_a_real_time_cloud_worker_expires_idle_sessions():
    cloud, out, _ = _cloud(RealClock(), session_ttl_s=0.2)
    runner = ActorThread(cloud, "cloud").start()
    try:
        runner.deliver(_request())
        end = time.monotonic() + 5
        while ("r", 1) not in cloud.tombstones and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        runner.stop()
    assert cloud.tombstones.get(("r", 1)) == "expired" and not cloud.sessions


def test_the_cache_bound_holds_as_caches_grow():
    prompt = int(llama_pair(0).prompt.input_ids.shape[1])
    cloud, out, _ = _cloud(max_cached_tokens=prompt - 1)        # the prompt alone is too long
    cloud.receive(_request())
    _drain(cloud)
    assert [m.code for m in out] == [DecodeError.CODE_OVERLOADED]
    assert cloud.sessions[("r", 1)].gone == "overloaded" and cloud.cached_tokens() == 0
    bound = prompt + 6                                          # cloud-led alone grows past it
    cloud, out, _ = _cloud(max_cached_tokens=bound)
    cloud.receive(_request(mode="cloud_led"))
    peak = 0
    while cloud.has_work():
        cloud.work()
        peak = max(peak, cloud.cached_tokens())
    assert peak <= bound and out[-1].code == DecodeError.CODE_OVERLOADED
    assert sum(len(m.tokens) for m in out if isinstance(m, CommittedTokens)) < MAX_NEW


def test_the_session_that_crosses_the_cache_bound_ends_and_no_other():
    pairs = [llama_pair(0), llama_pair(2)]
    prompts = [int(p.prompt.input_ids.shape[1]) for p in pairs]
    bound = max(prompts) + MAX_NEW + 4 + min(prompts)  # one finishes alone, not both at once
    edges, cloud = [], None
    for i, (pair, mode) in enumerate(zip(pairs, ("pipelined", "cloud_led"))):
        params = DecodingParams(mode=MODES[mode], block_size=3, max_new_tokens=MAX_NEW)
        edge, cloud = build(pair.target, pair.draft(0.7, i), pair.prompt, params,
                            request_id=10 + i, robot_id=f"go2-{i}", cloud=cloud,
                            cloud_config=CloudConfig(tokenizer_hash=pair.target.fingerprint(),
                                                     max_cached_tokens=bound))
        edges.append(edge)
    cloud.prompt_for = lambda request: pairs[request.request_id - 10].prompt
    outs = run_requests(edges, cloud)
    failed = [o for o in outs if not o.stats.ok]
    assert len(failed) == 1 and "cloud error 2" in failed[0].stats.error
    (ok,) = [o for o in outs if o.stats.ok]
    assert ok.tokens == pairs[outs.index(ok)].reference


def test_one_robot_cannot_take_every_session_nor_open_requests_too_fast():
    cloud, out, _ = _cloud(max_sessions=8, max_sessions_per_robot=2)
    for request_id in range(1, 9):
        cloud.receive(_request("greedy", request_id))
    cloud.receive(_request("other", 1))
    assert [m.code for m in out] == [DecodeError.CODE_OVERLOADED] * 6
    assert sorted(cloud.sessions) == [("greedy", 1), ("greedy", 2), ("other", 1)]
    cloud, out, _ = _cloud(max_sessions_per_robot=8, max_requests_per_s=2.0, request_burst=3)
    for request_id in range(1, 6):
        cloud.receive(_request("fast", request_id))
        cloud.receive(_request("fast", request_id))             # a resend costs nothing
    cloud.receive(_request("slow", 1))
    assert [(m.request_id, m.code) for m in out] == \
        [(4, DecodeError.CODE_RATE_LIMITED)] * 2 + [(5, DecodeError.CODE_RATE_LIMITED)] * 2
    cloud.clock.advance(1.0)
    for request_id in range(6, 9):
        cloud.receive(_request("fast", request_id))
    assert [m.request_id for m in out[4:]] == [8]               # two more per second


def retained_bytes(cloud) -> int:
    """Bytes held by the cloud's own state (sessions with their caches, tombstones, rate
    buckets, bookkeeping): everything but the model and the wiring, followed deeply."""
    skip = {"target", "verifier", "clock", "send", "prompt_for", "rule", "config"}
    seen, total = set(), 0
    stack = [v for k, v in vars(cloud).items() if k not in skip]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (DecoderAdapter, torch.nn.Module, type)) \
                or callable(obj) and not hasattr(obj, "__dict__"):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            total += obj.nbytes
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            stack += list(obj)
        elif hasattr(obj, "__dict__"):
            stack += list(vars(obj).values())
    return total


@pytest.mark.slow
def test_memory_stays_flat_over_500_requests_with_images():
    """Completed, cancelled and abandoned (expiring) sessions, each request with a 100 kB
    image: what the cloud retains stops growing once its bounded tables are full."""
    buffer = io.BytesIO()                                       # 300x300 noise: 109 kB
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)).save(
        buffer, format="JPEG", quality=95)
    image = buffer.getvalue()
    cloud, out, pair = _cloud(max_finished=32, max_tombstones=64, session_ttl_s=10.0)
    ids = RequestIds(7)
    retained = {}
    for n in range(1, 501):
        robot, request_id = f"go2-{n % 10}", ids.next()
        cloud.receive(_request(robot, request_id, image=image))
        _drain(cloud)
        if n % 7:                                              # every 7th is abandoned
            cloud.receive(DraftBlock(robot, request_id, 1, 0, prefix_hash([]),
                                     pair.reference[: MAX_NEW - 1 if n % 5 else 2]))
            _drain(cloud)
        if n % 5 == 0:
            cloud.receive(Cancel(robot, request_id, "done"))
        out.clear()
        cloud.clock.advance(0.2)
        if n % 100 == 0:
            retained[n] = retained_bytes(cloud)
    assert len(cloud.tombstones) == 64 and len(cloud.sessions) <= 32 + 10
    assert set(cloud.tombstones.values()) == {"expired", "evicted", "cancelled"}
    assert sum(len(s.request.image_data) for s in cloud.sessions.values() if s.finished) == 0
    assert retained[500] - retained[100] < 64_000, retained


def test_a_flood_is_dropped_beyond_the_inbox_bound_and_the_cloud_still_serves():
    cloud, out, pair = _cloud(RealClock())
    runner = ActorThread(cloud, "cloud", max_inbox=100)
    for n in range(5000):                           # the worker has not started: all queue
        runner.deliver(DraftBlock("flood", n, 1, 0, 0, [1]))
    assert runner.inbox.qsize() == 100 and runner.dropped == 4900
    runner.start()
    try:
        runner.deliver(_request())
        runner.deliver(DraftBlock("r", 1, 1, 0, prefix_hash([]), pair.reference[:3]))
        end = time.monotonic() + 10
        while not any(isinstance(m, Verdict) for m in list(out)) and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        runner.stop()
    (verdict,) = [m for m in out if isinstance(m, Verdict)]
    assert (verdict.accepted, verdict.next_token) == (3, pair.reference[3])
    assert sum(isinstance(m, DecodeError) for m in out) == 100


def test_decode_driver_still_splits_time_per_session():
    pair = llama_pair(0)
    out = decode(pair.target, MixtureDraft(pair.target, 0.7), pair.prompt,
                 DecodingParams(mode=MODES["plain"], block_size=3, max_new_tokens=MAX_NEW))
    assert out.tokens == pair.reference and out.stats.verify_s > 0
