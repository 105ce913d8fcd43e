"""`spec-vlm bench-link` in a short run: the edge, both bridges and the cloud as four
processes, and co-located two by two in `robot_site` and `cloud_site` (colocated.py), each
round trip's every hop recorded and the overhead computed (structure only, no timing
asserts)."""
import json
import subprocess
import sys

import pytest

from spec_vlm_control import hops

pytestmark = pytest.mark.slow


def test_a_short_link_benchmark_records_every_hop_of_every_round_trip_in_both_layouts(tmp_path):
    out = tmp_path / "link"          # run from tmp_path: the installed package, not the source
    run = subprocess.run([sys.executable, "-m", "spec_vlm_control.cli", "bench-link",
                          "--round-trips", "3", "--executors", "multi", "--rtt-ms", "10",
                          "--layouts", "separate,site",
                          "--no-busy-cpu", "--out", str(out)],     # conftest's runs
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads((out / "link_bench.json").read_text())
    assert (out / "link_bench.png").stat().st_size > 0
    assert set(report) == {"config", "machine", "variants"}
    assert list(report["variants"]) == ["separate multi", "site multi"]
    for variant in report["variants"].values():
        check_variant(variant)
    # the regime model predicts each live decision (spec-vlm plan --validate-live)
    plan = subprocess.run([sys.executable, "-m", "spec_vlm_control.cli", "plan",
                           "--validate-live", str(out), "--seeds", "1",
                           "--out", str(tmp_path / "plan")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-3000:]
    check_validation(json.loads((tmp_path / "plan" / "validation_live.json").read_text()),
                     report)
    # co-located: one process per site (the hop logs are <site>-<pid>.jsonl)
    for layout, processes in (("separate", 4), ("site", 2)):
        hop_logs = (out / f"{layout}-multi" / "hops").glob("*.jsonl")
        pids = {path.stem.rsplit("-", 1)[1] for path in hop_logs}
        assert len(pids) == processes, layout


def check_validation(validation, report):
    assert validation["config"]["mode"] == "plain" and validation["config"]["rtt_ms"] == 10.0
    assert list(validation["variants"]) == list(report["variants"])
    for name, v in validation["variants"].items():
        records = report["variants"][name]["decision_records"]
        assert v["decisions"] == len(records) == len(v["rows"]) >= 1
        for row, record in zip(v["rows"], records):
            assert row["measured_s"] == pytest.approx(record["total_s"])
            assert row["tokens"] == record["tokens"] and row["predicted_s"] > 0
            # the prediction charges at least the emulated round trip
            assert row["predicted_s"] >= 0.010
        assert v["error"] == pytest.approx(v["predicted_s"] / v["measured_s"] - 1.0)
        assert v["predicted_with_overhead_s"] >= v["predicted_s"]


def check_variant(variant):
    summary = variant["summary"]
    assert summary["complete"] >= 3 and summary["complete"] == summary["round_trips"]
    assert not summary["missing_points"]
    assert list(summary["segments"]) == list(hops.SEGMENTS)
    assert all(q["n"] == summary["complete"] for q in summary["segments"].values())
    assert summary["overhead"]["median_ms"] is not None
    for record in variant["round_trip_records"]:
        assert not record["missing"] and record["overhead_ms"] is not None
        # the overhead is the round trip less the emulated 10 ms, the pass and the queue
        segments = record["segments_ms"]
        assert record["overhead_ms"] == pytest.approx(
            sum(segments.values()) - 10.0 - segments["pass"] - segments[hops.QUEUE], abs=1e-3)
