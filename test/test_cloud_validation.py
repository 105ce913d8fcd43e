"""The cloud answers what it cannot serve and keeps serving: every input that used to crash
or stall the cloud (garbage and truncated images, token ids outside the vocabulary, NaN
sampling parameters, inconsistent q rows, a 10,000-token block, a 1 MB instruction) gets
DecodeError BAD_REQUEST with its specific reason, and a well-behaved robot served by the same
CloudVerifier afterwards gets exactly the target's greedy tokens. Real tiny Qwen2-VL target,
real image decoding and chat template."""
from __future__ import annotations

import functools
import io
import math
import random
import time
from dataclasses import replace

import pytest
import torch
from PIL import Image

from engine_pairs import _qwen2vl_base, hf_greedy
from spec_vlm_control.core.clock import CostedAdapter, ManualClock
from spec_vlm_control.core.cloud import CloudConfig, CloudVerifier
from spec_vlm_control.core.decode import run_request
from spec_vlm_control.core.edge import EdgeSession
from spec_vlm_control.core.models.synthetic import MixtureDraft
from spec_vlm_control.core.prefix import prefix_hash
from spec_vlm_control.core.prompts import Qwen2VLPrompts, request_prompt
from spec_vlm_control.core.protocol import (MODES, Cancel, DecodeError, DecodeRequest,
                                            DecodingParams, DraftBlock, Handshake)

MAX_NEW = 10
INSTRUCTION = "go to the red ball"


def jpeg(seed: int = 0, size: tuple[int, int] = (56, 56)) -> bytes:
    from tiny_models import synthetic_image
    buffer = io.BytesIO()
    synthetic_image(seed).resize(size).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 40, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def huge_header_jpeg(side: int) -> bytes:
    """A 1 kB JPEG whose frame header claims side x side pixels."""
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


class Cloud:
    """The real CloudVerifier around the tiny Qwen2-VL target, prompts built from each
    request's own JPEG; messages in, messages out."""

    def __init__(self, **limits):
        base = _qwen2vl_base(0)
        self.base = base
        self.prompts = Qwen2VLPrompts(base.tokenizer, base.image_processor)
        self.fingerprint = base.target.fingerprint()
        self.clock = ManualClock()
        self.target = CostedAdapter(base.target, self.clock, 0.01, 0.0005)
        self.out = []
        self.cloud = CloudVerifier(
            self.target, lambda request: request_prompt(self.prompts, request), self.clock,
            send=self.out.append,
            config=CloudConfig(tokenizer_hash=self.fingerprint, **limits))

    def request(self, robot: str, image: bytes = None, image_format: str = "jpeg",
                instruction: str = INSTRUCTION, stamp_ns: int = 1, **params) -> DecodeRequest:
        params = {"mode": MODES["plain"], "block_size": 3, "max_new_tokens": MAX_NEW, **params}
        return DecodeRequest(robot, 1, instruction, jpeg() if image is None else image,
                             image_format, DecodingParams(**params),
                             Handshake(tokenizer_hash=self.fingerprint), stamp_ns)

    def drain(self) -> list:
        while self.cloud.has_work():
            self.cloud.work()
        out, self.out[:] = list(self.out), []
        return out


@functools.lru_cache(maxsize=None)
def reference(seed: int) -> list[int]:
    """HF generate(do_sample=False) on the prompt built from the JPEG the robot sends."""
    cloud = Cloud()
    prompt = request_prompt(cloud.prompts, cloud.request("any", image=jpeg(seed)))
    ids = prompt.input_ids
    return hf_greedy(cloud.base.target.model, MAX_NEW, input_ids=ids,
                     mm_token_type_ids=(ids == cloud.base.target.image_token_id).int(),
                     **prompt.vision)


def serve_well_behaved_robot(c: Cloud, mode: str = "pipelined", seed: int = 3) -> list[int]:
    """A real EdgeSession (a draft agreeing 60% of the time) against the same cloud."""
    edge_clock = ManualClock()
    request = c.request(f"good-{mode}", image=jpeg(seed), mode=MODES[mode])
    draft = CostedAdapter(MixtureDraft(c.base.target, 0.6, seed), edge_clock, 0.001)
    edge = EdgeSession(draft, request_prompt(c.prompts, request), request, edge_clock)
    out = run_request(edge, c.cloud)
    assert out.stats.ok, out.stats.error
    return out.tokens


def bad_requests(c: Cloud, vocab: int) -> dict[str, tuple[DecodeRequest, str]]:
    """robot -> (a request the cloud cannot serve, the reason it must give)."""
    nan, inf = math.nan, math.inf
    cases = {
        "random-image": (c.request("", image=random.Random(1).randbytes(1024)),
                         "not a JPEG or PNG"),
        "truncated-jpeg": (c.request("", image=jpeg()[:int(len(jpeg()) * 0.9)]),
                           "not decodable"),
        "pixel-bomb": (c.request("", image=huge_header_jpeg(4000)),
                       "4000x4000 pixels > max_image_pixels"),
        "pil-bomb": (c.request("", image=huge_header_jpeg(60000)), "> max_image_pixels"),
        "big-image": (c.request("", image=b"\xff\xd8" + bytes(5 << 20)), "max_image_bytes"),
        "gif": (c.request("", image_format="gif"), "not JPEG or PNG"),
        "sliver": (c.request("", image=png((28 * 250, 28)), image_format="png"), "ratio"),
        "megabyte-instruction": (c.request("", instruction="go " * 350_000),
                                 "max_instruction_chars"),
        "long-prompt": (c.request("", instruction="turn left " * 150), "max_prompt_tokens"),
        "nan-temperature": (c.request("", temperature=nan), "temperature nan"),
        "inf-temperature": (c.request("", temperature=inf), "temperature inf"),
        "negative-temperature": (c.request("", temperature=-1.0), "temperature"),
        "tiny-temperature": (c.request("", temperature=1e-320), "temperature"),
        "zero-top-p": (c.request("", temperature=1.0, top_p=0.0), "top_p"),
        "nan-top-p": (c.request("", temperature=1.0, top_p=nan), "top_p"),
        "big-top-p": (c.request("", top_p=1.5), "top_p"),
        "unknown-mode": (c.request("", mode=9), "mode 9"),
        "huge-block-size": (c.request("", block_size=10_000), "block_size"),
        "no-new-tokens": (c.request("", max_new_tokens=0), "max_new_tokens"),
        "huge-new-tokens": (c.request("", max_new_tokens=65535), "max_new_tokens"),
        "negative-seed": (c.request("", temperature=1.0, seed=-1), "seed"),
        "negative-stamp": (c.request("", stamp_ns=-1), "stamp_ns -1"),
        "float-stamp": (c.request("", stamp_ns=1.5), "stamp_ns 1.5: not an integer"),
    }
    return {robot: (DecodeRequest(**{**vars(r), "robot_id": robot}), reason)
            for robot, (r, reason) in cases.items()}


def bad_blocks(vocab: int) -> dict[str, tuple[dict, list, str]]:
    """robot -> (request params, a block the cloud cannot verify, the reason it must give)."""
    greedy, sampled = {}, {"temperature": 0.8}
    empty = prefix_hash([])

    def block(tokens, sizes=(), ids=(), probs=(), length=0, round=1):
        return [round, length, empty if length == 0 else 0, list(tokens), list(sizes),
                list(ids), list(probs)]
    return {
        "oov-token": (greedy, block([5, vocab + 7]), f"tokens: {vocab + 7} outside"),
        "negative-token": (greedy, block([-1]), "tokens: -1 outside"),
        "long-block": (greedy, block([5] * 65), "block of 65 tokens > max_block_tokens 64"),
        "huge-block": (greedy, block([5] * 10_000), "block of 10000 tokens"),
        "rows-in-greedy": (greedy, block([5], [1], [5], [1.0]), "greedy"),
        "negative-length": (greedy, block([5], length=-3), "assumed_length"),
        "negative-round": (greedy, block([5], round=-1), "round"),
        "missing-rows": (sampled, block([5, 6]), "0 q rows for 2"),
        "oov-support": (sampled, block([5], [2], [5, vocab], [0.5, 0.5]), "support_ids"),
        "nan-probs": (sampled, block([5], [1], [5], [math.nan]), "support_probs"),
        "negative-probs": (sampled, block([5], [2], [5, 6], [1.5, -0.5]), "support_probs"),
        "rows-overrun": (sampled, block([5], [3], [5, 6], [0.5, 0.5]), "3 entries"),
        "massless-row": (sampled, block([5], [1], [5], [0.0]), "without probability mass"),
        "token-off-row": (sampled, block([5], [1], [6], [1.0]), "no probability"),
        "zero-size-row": (sampled, block([5, 6], [0, 2], [5, 6], [0.5, 0.5]), "support_sizes"),
    }


def error_reasons(messages) -> dict[str, list[tuple[int, str]]]:
    out = {}
    for m in messages:
        if isinstance(m, DecodeError):
            out.setdefault(m.robot_id, []).append((m.code, m.reason))
    return out


def test_crash_inputs_get_a_specific_bad_request_and_the_cloud_keeps_serving():
    c = Cloud(max_prompt_tokens=400)
    vocab = c.target.vocab_size
    requests = bad_requests(c, vocab)
    for request, _ in requests.values():
        c.cloud.receive(request)
    answered = error_reasons(c.drain())
    for robot, (_, reason) in requests.items():
        assert len(answered.get(robot, [])) == 1, (robot, answered.get(robot))
        code, text = answered[robot][0]
        assert code == DecodeError.CODE_BAD_REQUEST and reason in text, (robot, text)

    blocks = bad_blocks(vocab)
    for robot, (params, fields, _) in blocks.items():
        c.cloud.receive(c.request(robot, **params))
        c.drain()                                             # prefilled, waiting for blocks
        started = time.perf_counter()
        c.cloud.receive(DraftBlock(robot, 1, *fields))
        assert time.perf_counter() - started < 0.1, robot     # answered, never verified
        answered = error_reasons(c.drain())
        assert [code for code, _ in answered.get(robot, [])] == [DecodeError.CODE_BAD_REQUEST], \
            (robot, answered)
        assert blocks[robot][2] in answered[robot][0][1], (robot, answered[robot])
        assert c.cloud.sessions[(robot, 1)].finished         # the refused block ended it
    # a bad block for a session the cloud does not know is refused the same way
    c.cloud.receive(DraftBlock("stranger", 1, 1, 0, prefix_hash([]), [vocab]))
    assert error_reasons(c.drain())["stranger"][0][0] == DecodeError.CODE_BAD_REQUEST
    c.cloud.receive(Cancel("stranger", 1, "x" * 100_000))     # harmless: nothing to answer
    assert c.drain() == []

    assert not any(s.blocks for s in c.cloud.sessions.values())   # nothing bad was queued
    for mode in ("pipelined", "cloud_led"):
        assert serve_well_behaved_robot(c, mode) == reference(3)


def test_a_refused_message_never_touches_another_robots_session():
    c = Cloud()
    good = c.request("good", image=jpeg(3))
    c.cloud.receive(good)
    c.drain()
    c.cloud.receive(DecodeRequest(**{**vars(good),
                                     "image_data": random.Random(2).randbytes(512)}))
    assert error_reasons(c.drain())["good"][0][0] == DecodeError.CODE_BAD_REQUEST
    session = c.cloud.sessions[("good", 1)]
    assert not session.finished and session.seq is not None   # the open session lives on
    ref = reference(3)
    c.cloud.receive(DraftBlock("good", 1, 1, 0, prefix_hash([]), ref[:3]))
    (verdict,) = c.drain()
    assert (verdict.accepted, verdict.next_token) == (3, ref[3])


@pytest.mark.parametrize("temperature, top_p", [(0.7, 0.9), (1.0, 1.0)])
def test_valid_sampled_blocks_from_a_real_edge_pass_validation(temperature, top_p):
    """The q rows a real edge sends pass every check (float32 rounding included)."""
    c = Cloud()
    edge_clock = ManualClock()
    request = c.request("sampler", image=jpeg(3), mode=MODES["pipelined"],
                        temperature=temperature, top_p=top_p, seed=7)
    draft = CostedAdapter(MixtureDraft(c.base.target, 0.6, 3), edge_clock, 0.001)
    edge = EdgeSession(draft, request_prompt(c.prompts, request), request, edge_clock)
    out = run_request(edge, c.cloud)
    assert out.stats.ok, out.stats.error
    assert c.cloud.refused == 0 and len(out.tokens) > 0


def test_prompt_errors_other_than_value_errors_end_only_their_request():
    """Anything raised while building a prompt is the request's fault, not only a
    ValueError (here the chat template's own TemplateError)."""
    c = Cloud()
    template = c.base.tokenizer.chat_template
    c.base.tokenizer.chat_template = "{{ raise_exception('broken template') }}"
    try:
        c.cloud.receive(c.request("templated"))
        answered = error_reasons(c.drain())
    finally:
        c.base.tokenizer.chat_template = template
    assert answered["templated"][0][0] == DecodeError.CODE_BAD_REQUEST
    assert "broken template" in answered["templated"][0][1]
    assert serve_well_behaved_robot(c) == reference(3)


def test_process_faults_are_not_swallowed():
    """Out of memory during a prefill is the process's fault: it propagates (the node then
    exits and is restarted) instead of being answered as a bad request."""
    c = Cloud()

    def out_of_memory(request):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 10 GiB")
    c.cloud.prompt_for = out_of_memory
    c.cloud.receive(c.request("r"))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        c.drain()


# -- fuzz: arbitrary field values through receive() and work() -------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ_LIMITS = dict(max_block_tokens=16, max_new_tokens=8)
VOCAB = _qwen2vl_base(0).target.vocab_size
IMAGES = {"jpeg": jpeg(1), "random": random.Random(0).randbytes(300), "truncated": jpeg(1)[:600],
          "bomb": huge_header_jpeg(4000), "none": b""}
STRUCTURALLY_BAD_IMAGES = {"random", "bomb"}

wild_ints = st.one_of(st.integers(-3, 20), st.integers(-2 ** 70, 2 ** 70),
                      st.sampled_from([2 ** 32, 2 ** 64, -2 ** 63]))
wild_floats = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-320, 1e300]))
robots = st.sampled_from(["a", "a", "a", "b"])               # mostly one session's key
request_ids = st.one_of(st.just(1), st.just(1), st.integers(0, 2), wild_ints)


def mutated(draw, fields: dict, wild: dict) -> dict:
    """Valid fields with up to two of them replaced by wild values."""
    for name in draw(st.lists(st.sampled_from(sorted(wild)), max_size=2, unique=True)):
        fields[name] = draw(wild[name])
    return fields


@st.composite
def requests(draw):
    f = mutated(draw, dict(
        mode=draw(st.integers(0, 4)), block_size=draw(st.integers(0, 4)),
        max_new_tokens=draw(st.integers(1, 8)), temperature=draw(st.sampled_from([0.0, 0.8])),
        top_p=draw(st.sampled_from([1.0, 0.9])), seed=draw(st.integers(0, 5)), stamp_ns=1,
        instruction=INSTRUCTION, image="jpeg", format="jpeg"), dict(
        mode=wild_ints, block_size=wild_ints, max_new_tokens=wild_ints, temperature=wild_floats,
        top_p=wild_floats, seed=wild_ints, stamp_ns=wild_ints,
        instruction=st.one_of(st.text(max_size=20), st.just("go " * 1000)),
        image=st.sampled_from(sorted(IMAGES)),
        format=st.sampled_from(["png", "rgb8; jpeg compressed bgr8", "gif", ""])))
    params = DecodingParams(f["mode"], f["block_size"], f["max_new_tokens"], f["temperature"],
                            f["top_p"], f["seed"])
    request = DecodeRequest(draw(robots), draw(request_ids), f["instruction"],
                            IMAGES[f["image"]], f["format"], params,
                            Handshake(tokenizer_hash=_qwen2vl_base(0).target.fingerprint()),
                            f["stamp_ns"])
    p = params
    bad = not (0 <= p.mode <= 4 and 0 <= p.block_size <= 16 and 1 <= p.max_new_tokens <= 8
               and math.isfinite(p.temperature) and (p.temperature == 0 or p.temperature >= 1e-6)
               and math.isfinite(p.top_p) and 0 < p.top_p <= 1 and 0 <= p.seed < 2 ** 64
               and 0 <= request.stamp_ns < 2 ** 64
               and len(request.instruction) <= 2000 and f["format"] != "gif"
               and (not f["format"] or f["image"] not in STRUCTURALLY_BAD_IMAGES))
    return request, bad


@st.composite
def blocks(draw):
    f = mutated(draw, dict(
        tokens=draw(st.lists(st.integers(0, VOCAB - 1), max_size=6)), rows="none",
        round=draw(st.integers(1, 9)), assumed_length=0, assumed_hash=prefix_hash([])), dict(
        tokens=st.lists(st.one_of(st.integers(-3, VOCAB + 3), wild_ints), max_size=20),
        rows=st.sampled_from(["valid", "garbage"]), round=wild_ints, assumed_length=wild_ints,
        assumed_hash=wild_ints))
    ids = f["tokens"]
    sizes, support, probs = [], [], []
    if f["rows"] == "valid":
        for t in ids:
            p = draw(st.floats(0.05, 1.0))
            sizes.append(2)
            support += [t, (t + 1) % VOCAB if 0 <= t < VOCAB else t]
            probs += [p, 1.0 - p]
    elif f["rows"] == "garbage":
        support = draw(st.lists(wild_ints, max_size=4))
        probs = draw(st.lists(wild_floats, max_size=4))
        sizes = [len(support) + 1] + draw(st.lists(wild_ints, max_size=3))
    block = DraftBlock(draw(robots), draw(request_ids), f["round"], f["assumed_length"],
                       f["assumed_hash"], ids, sizes, support, probs)
    bad = not (all(0 <= t < VOCAB for t in ids) and len(ids) <= 16
               and 0 <= block.round < 2 ** 32 and 0 <= block.assumed_length <= 8
               and 0 <= block.assumed_hash < 2 ** 64) or f["rows"] == "garbage"
    return block, bad


cancels = st.builds(lambda r, i, reason: (Cancel(r, i, reason), False), robots, request_ids,
                    st.text(max_size=10))


@settings(derandomize=True, max_examples=100, deadline=None)
@given(requests(), st.lists(st.one_of(requests(), blocks(), cancels), max_size=6))
def test_fuzzed_messages_never_raise_and_every_bad_one_is_answered(opening, messages):
    """A request (maybe bad) for robot a's request 1, then messages that mostly name it."""
    c = Cloud(**FUZZ_LIMITS)
    first, first_bad = opening
    for message, bad in [(replace(first, robot_id="a", request_id=1), first_bad)] + messages:
        c.cloud.receive(message)
        answers = [m for m in c.out if isinstance(m, DecodeError)
                   and (m.robot_id, m.request_id) == (message.robot_id, message.request_id)]
        if bad and 0 <= message.request_id < 2 ** 64:
            assert [m.code for m in answers] == [DecodeError.CODE_BAD_REQUEST], message
        for _ in range(30):                  # a bounded number of target passes
            if not c.cloud.has_work():
                break
            c.cloud.work()
        c.out.clear()
    for session in c.cloud.sessions.values():
        assert len(session.committed) <= FUZZ_LIMITS["max_new_tokens"]
