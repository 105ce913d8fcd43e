"""The fleet benchmark (`spec-vlm fleet-bench`): the capacity search, the CPU-time clock of
its cloud, and a --quick run checked for structure and consistency (every variant decodes
greedily, so the same scene gets the same answer token for token in every run)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spec_vlm_control.core.clock import MeasuredClock
from spec_vlm_control.fleet.capacity import search
from spec_vlm_control.fleet.simulation import SPECULATIVE_MODES, batching_available, variants

SPEC_VLM = Path(sys.prefix) / "bin" / "spec-vlm"


def searched(limit: int, max_robots: int, resolution: float = 0.0):
    tried = []

    def meets(n: int) -> bool:
        tried.append(n)
        return n <= limit
    return search(meets, max_robots, resolution), tried


def test_capacity_doubles_then_bisects_to_one_robot():
    assert searched(37, 128) == (37, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37])


def test_capacity_bisection_stops_at_the_resolution():
    capacity, tried = searched(37, 128, resolution=0.25)
    assert tried == [1, 2, 4, 8, 16, 32, 64, 48, 40]
    assert capacity == 32                       # the bracket [32, 40) is 0.25 x 32 wide


def test_capacity_at_the_bounds():
    assert searched(1000, 128) == (128, [1, 2, 4, 8, 16, 32, 64, 128])
    assert searched(1000, 100)[0] == 100        # the last doubling is clipped to the maximum
    assert searched(0, 128) == (0, [1])


def test_the_cpu_clock_does_not_advance_while_the_process_waits():
    wall, cpu = MeasuredClock(), MeasuredClock(time.process_time)
    wall.start(5.0)
    cpu.start(5.0)
    time.sleep(0.3)
    assert wall.now() - 5.0 >= 0.3
    assert cpu.now() - 5.0 < 0.15


@pytest.mark.slow   # runs the installed spec-vlm program: a minute or more
def test_quick_run_structure_and_consistency(tmp_path):
    result = subprocess.run([str(SPEC_VLM), "fleet-bench", "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "fleet.png").stat().st_size > 0
    assert "capacity" in (tmp_path / "fleet.md").read_text()
    r = json.loads((tmp_path / "fleet.json").read_text())

    names = [v.name for v in variants()]
    assert [v["name"] for v in r["config"]["variants"]] == names
    assert {(v["mode"], v["batched"]) for v in r["config"]["variants"]} == \
        {(m, b) for m in SPECULATIVE_MODES for b in (True, False)} | {("stream", True)}
    if batching_available():
        assert r["config"]["cloud_config_one_per_pass"]["max_batch_sessions"] == 1
        assert r["config"]["cloud_config_batched"]["max_batch_sessions"] > 1
    assert {"cpus", "torch", "load_average_before"} <= set(r["machine"])

    keys = {"p50_s", "p99_s", "target_passes_per_s", "verified_tokens_per_s", "busy_fraction",
            "padding_fraction", "sessions_per_pass", "decisions", "failed"}
    for table in (r["closed_loop"], r["saturation"]):
        assert set(table) == set(names)
    for name in names:
        assert set(r["closed_loop"][name]) == {"1", "2"}          # --quick: at most 2 robots
        assert set(r["saturation"][name]) == {"2"}
        for s in [*r["closed_loop"][name].values(), *r["saturation"][name].values()]:
            assert keys <= set(s)
            assert s["decisions"] == 4 and s["failed"] == 0
            assert 0.05 <= s["p50_s"] <= s["p99_s"]                 # the 50 ms round trip at least
            assert 0 < s["busy_fraction"] <= 1 and 0 <= s["padding_fraction"] < 1
        assert 0 <= r["capacity"][name] <= 2

    reference = r["closed_loop"]["stream batched"]["1"]["p99_s"]
    assert r["reference"]["p99_s"] == reference and r["reference"]["bound_s"] == 2 * reference
    assert len(r["goals"]) == len(SPECULATIVE_MODES) + 1          # no N = 8 in --quick
    assert all(isinstance(g["met"], bool) for g in r["goals"])

    consistency = r["consistency"]
    # every decision, warm-ups included: N = 1 and 2 closed loop, N = 2 back to back
    assert consistency["decisions"] == len(names) * ((4 + 1) + (4 + 2) + (4 + 2))
    assert consistency["scenes"] > 1
    assert consistency["mismatched_scenes"] == {}

    micro = r["per_pass_microbenchmark"]
    assert "error" in micro or [(x["sessions"], x["positions"]) for x in micro["rows"]] == \
        [(8, 1), (8, 5), (32, 5)]
    mixed = micro.get("prefill_mixed", {})        # 1 image prefill + 7 blocks of 5
    assert "error" in micro or (mixed["blocks"], mixed["positions"], mixed["separate_padding"],
                                mixed["one_pass_padding"] > 0) == (7, 5, 0.0, True)
