"""cloud_led is never slower than cloud-only streaming: admission by the cloud's pass costs
and the robot's acceptance (core/admission.py), and an edge that sends only what the cloud
has not seen. Virtual time with a fixed cost model: exact and repeatable."""
from __future__ import annotations

import types

import pytest
import torch

from spec_vlm_control.commands import bench
from spec_vlm_control.core.admission import Acceptance, Admission, PassCosts
from spec_vlm_control.core.decode import Costs, build, decode, mode_setup, run_request
from spec_vlm_control.core.link import LinkEmulator
from spec_vlm_control.core.models.synthetic import MixtureDraft
from spec_vlm_control.core.protocol import DraftBlock

torch.set_num_threads(1)
# what `spec-vlm bench --clock calibrated` measured for its pair on this machine
CALIBRATED = Costs(target_pass=0.0054, target_token=0.00106, draft_pass=0.002)


@pytest.fixture(scope="module")
def bench_pair():
    args = types.SimpleNamespace(target=(256, 6), draft=(64, 2), vocab=256, tokens=48)
    return bench._models(args)


def _run(pair, mode: str, agreement: float, rtt_ms: float, tokens: int = 48):
    target, draft_model, prompt, answer = pair
    draft = MixtureDraft(draft_model, agreement, seed=3, reference=answer,
                         prompt_length=prompt.input_ids.shape[1])
    params, config = mode_setup(mode, 4, tokens)
    up, down = LinkEmulator(rtt_ms / 2000, seed=1), LinkEmulator(rtt_ms / 2000, seed=2)
    out = decode(target, draft, prompt, params, costs=CALIBRATED, edge_config=config,
                 exit_layers=[2], uplink=up, downlink=down)
    assert out.stats.ok and out.tokens == answer[:tokens]
    return out, up.sent + down.sent


@pytest.mark.slow                  # bench's pair, 48 tokens, both modes at every round trip
@pytest.mark.parametrize("rtt_ms", [0, 10, 50, 120])
def test_a_never_agreeing_draft_costs_no_time_over_streaming(bench_pair, rtt_ms):
    stream, _ = _run(bench_pair, "stream", 0.0, rtt_ms)
    led, _ = _run(bench_pair, "cloud_led", 0.0, rtt_ms)
    assert led.stats.total_s <= 1.02 * stream.stats.total_s
    assert led.stats.target_passes == stream.stats.target_passes   # no block was verified


def test_the_edge_sends_each_draft_position_once(bench_pair):
    """On a lossless link no block repeats a position an earlier one carried while the
    chain held (the old edge re-sent the whole chain after every block)."""
    target, draft_model, prompt, answer = bench_pair
    draft = MixtureDraft(draft_model, 1.0, seed=3, reference=answer,
                         prompt_length=prompt.input_ids.shape[1])
    params, config = mode_setup("cloud_led", 4, 48)
    edge, cloud = build(target, draft, prompt, params, costs=CALIBRATED, edge_config=config)
    spans = []
    receive = cloud.receive

    def record(message):
        if isinstance(message, DraftBlock):
            spans.append((message.assumed_length, len(message.tokens)))
        receive(message)
    cloud.receive = record
    link = dict(latency_s=0.025)
    out = run_request(edge, cloud, LinkEmulator(**link), LinkEmulator(**link))
    assert out.tokens == answer
    covered = set()
    for start, length in spans:
        positions = set(range(start, start + length))
        assert not positions & covered
        covered |= positions


def test_pass_costs_are_a_line_through_every_pass():
    costs = PassCosts()
    for positions in (1, 1, 5, 3, 1, 9):
        costs.record(positions, 0.010 + 0.001 * positions)
    assert costs.slope == pytest.approx(0.001)
    assert costs.cost(4) == pytest.approx(0.014)
    assert costs.marginal(8, 3) == pytest.approx(0.003)


def test_admission_needs_agreement_and_pays_for_every_position():
    admission = Admission()
    assert admission.best_length(8, Acceptance().rate) == 0      # nothing seen agree yet
    assert admission.best_length(8, 0.9) == 1                     # slope unknown: a probe
    for positions in (1, 5):
        admission.costs.record(positions, 0.010 + 0.002 * positions)
    # a pass of 1 + r positions beats r + 1 steps' tokens per second only while
    # (1 + a + ... + a^r) * cost(have) >= cost(have + r)
    assert admission.best_length(8, 0.1) == 0
    assert admission.best_length(8, 0.95) == 8
    # batched: the step it replaces is the whole pass being formed, so a position costs
    # relatively less and a weaker draft pays
    assert admission.best_length(8, 0.1, have=1) == 0
    assert admission.best_length(8, 0.1, have=40) > 0


def test_costs_and_acceptance_outlive_the_session(bench_pair):
    """The cloud keeps both across requests: a robot's second request with a good draft
    verifies from its first pass (no step to learn acceptance, no probe)."""
    target, draft_model, prompt, answer = bench_pair
    params, config = mode_setup("cloud_led", 4, 16)
    passes, cloud = [], None
    for request_id in (1, 2):
        draft = MixtureDraft(draft_model, 1.0, seed=3, reference=answer,
                             prompt_length=prompt.input_ids.shape[1])
        edge, cloud = build(target, draft, prompt, params, costs=CALIBRATED,
                            edge_config=config, cloud=cloud, request_id=request_id)
        out = run_request(edge, cloud)
        assert out.tokens == answer[:16]
        passes.append(out.stats.target_passes)
    assert passes[1] < passes[0]
