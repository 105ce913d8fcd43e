"""`spec-vlm plan`: the regime prediction's structure, its map, and cases whose answer is known
without the engine (a useless draft behind a long round trip; a perfect draft behind a slow
target; exits that are always right or always wrong)."""
import json

import pytest
import torch

from spec_vlm_control.cli import main
from spec_vlm_control.core.regimes import BASELINES, MODES, Regime, predict, winner

ALL = set(MODES + BASELINES)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_plan_writes_every_mode_and_a_map_with_one_winner_per_cell(tmp_path, capsys):
    status = main(["plan", "--out", str(tmp_path), "--tokens", "4", "--seeds", "1", "--map",
                   "--map-rtt-ms", "0,100", "--map-pass-ms", "5,200"])
    assert status == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert set(plan) == {"config", "seeds", "prediction"}
    assert plan["config"]["rtt_s"] == pytest.approx(0.05) and plan["config"]["tokens"] == 4
    assert set(plan["prediction"]) == ALL
    for p in plan["prediction"].values():
        assert {"decision_s", "token_s", "passes_per_token", "early_hit_rate"} <= set(p)
        assert p["decision_s"] > 0 and p["token_s"] == pytest.approx(p["decision_s"] / 4)
    table = capsys.readouterr().out
    assert all(mode in table for mode in ALL)
    mapped = json.loads((tmp_path / "map.json").read_text())
    assert len(mapped["cells"]) == 2 and all(len(row) == 2 for row in mapped["cells"])
    for row in mapped["cells"]:
        for cell in row:
            assert cell["winner"] in ALL and set(cell["decision_s"]) == ALL
            assert cell["decision_s"][cell["winner"]] == min(cell["decision_s"].values())
    assert (tmp_path / "map.png").stat().st_size > 0


def test_a_useless_draft_behind_a_long_round_trip_loses_to_streaming():
    regime = Regime(draft_s=0.002, pass_s=0.010, per_position_s=0.0005, rtt_s=2.0,
                    acceptance=0.0, exit_hit=1.0, tokens=4)
    p = predict(regime, seeds=[0])
    assert winner(p) in {"stream", "cloud_led"}
    for mode in ("plain", "early_exit", "preemptive", "pipelined", "per_token"):
        # every edge-led token waits for its own round trip; streaming pays one
        assert p[mode]["decision_s"] > 3 * p["stream"]["decision_s"]


def test_a_perfect_draft_behind_a_slow_target_wins_at_the_edge():
    regime = Regime(draft_s=0.001, pass_s=0.200, per_position_s=0.0, rtt_s=0.0,
                    acceptance=1.0, exit_hit=1.0, k=4, tokens=10)
    p = predict(regime, seeds=[0])
    assert p["plain"]["passes_per_token"] == pytest.approx(0.2)   # k + 1 tokens a pass
    assert p["plain"]["decision_s"] < 0.5 * p["stream"]["decision_s"]
    assert winner(p) not in BASELINES       # cloud_led drafts at the edge too


@pytest.mark.parametrize("hit", [0.0, 1.0])
def test_exit_hit_rate_is_what_was_asked(hit):
    regime = Regime(draft_s=0.002, pass_s=0.010, per_position_s=0.0, rtt_s=0.02,
                    acceptance=0.7, exit_hit=hit, tokens=12)
    p = predict(regime, seeds=[0, 1], modes=["early_exit"])
    assert p["early_exit"]["early_hit_rate"] == hit


def test_a_probability_out_of_range_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["plan", "--out", str(tmp_path), "--acceptance", "1.5"])
    assert stop.value.code == 2


@pytest.mark.parametrize("k", [1, 2, 4])
def test_a_live_decisions_acceptance_is_the_coin_that_accepts_as_many_per_round(k):
    from spec_vlm_control.commands.plan import acceptance_of
    for p in (0.0, 0.3, 0.62, 0.9, 1.0):
        assert acceptance_of(sum(p ** i for i in range(1, k + 1)), k) == pytest.approx(p,
                                                                                     abs=1e-6)
    assert acceptance_of(k, k) == pytest.approx(1.0)
    assert acceptance_of(0.0, k) == pytest.approx(0.0, abs=1e-9)
