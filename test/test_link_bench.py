"""`spec-vlm bench-link` in a short run: the edge, both bridges and the cloud as processes,
each round trip's every hop recorded and the overhead computed (structure only, no timing
asserts)."""
import json
import subprocess
import sys

import pytest

from spec_vlm_control import hops

pytestmark = pytest.mark.slow


def test_a_short_link_benchmark_records_every_hop_of_every_round_trip(tmp_path):
    out = tmp_path / "link"          # run from tmp_path: the installed package, not the source
    run = subprocess.run([sys.executable, "-m", "spec_vlm_control.cli", "bench-link",
                          "--round-trips", "3", "--executors", "multi", "--rtt-ms", "10",
                          "--no-busy-cpu", "--out", str(out)],     # conftest's runs
                         capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads((out / "link_bench.json").read_text())
    assert (out / "link_bench.png").stat().st_size > 0
    assert set(report) == {"config", "machine", "variants"}
    (variant,) = report["variants"].values()
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
