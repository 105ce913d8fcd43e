"""The demo's replays run as the live cloud does: one CloudVerifier for the whole run, every
decision in all five modes and both cloud-only baselines, each lossless."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from tiny_models import INSTRUCTION, jpeg_frame, reference_greedy, save_tiny_vlm
from spec_vlm_control.core.models.loading import load_pair
from spec_vlm_control.demo.replay import BASELINES, MODES, Replayer

torch.set_num_threads(1)


def test_one_cloud_replays_every_decision_in_every_mode(tmp_path):
    save_tiny_vlm(tmp_path / "target", seed=3)
    save_tiny_vlm(tmp_path / "draft", seed=11, layers=2, hidden=32, heads=2, kv_heads=1)
    draft, target = load_pair(str(tmp_path / "draft"), str(tmp_path / "target"), "fp64")
    replayer = Replayer(target, draft, block_size=3, max_new_tokens=6, rtt_ms=10.0,
                        exit_layers=[0])
    for seed in (0, 1):
        jpeg = jpeg_frame(seed)
        answer, _ = reference_greedy(tmp_path / "target", INSTRUCTION, jpeg, 6)
        decision = SimpleNamespace(request_id=7, instruction=INSTRUCTION, jpeg=jpeg,
                                   token_ids=answer)
        replays = replayer.every_mode(decision)
        assert set(replays) == set(MODES + BASELINES) and len(MODES) == 5
        assert all(r["ok"] and r["same_as_live"] for r in replays.values()), replays
    # every replay was a session of the one cloud (the same decision id twice, too)
    assert len(replayer.cloud.sessions) == 2 * len(MODES + BASELINES)
