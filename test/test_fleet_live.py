"""fleet-bench's live check (`spec-vlm fleet-live`): robots on the real ROS graph, each in its
own domain, closed loop against one cloud. A small run is checked for structure: every
decision answered, tokens equal to the target's own greedy answer, the JSON complete, and
fleet-bench's p50 at the same N printed beside the live one."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import next_domain_id
from PIL import Image

from spec_vlm_control.commands.fleet_live import bench_p50

SPEC_VLM = Path(sys.prefix) / "bin" / "spec-vlm"
ROBOTS, DECISIONS, SCENES = 2, 2, 6


def test_a_missing_or_partial_benchmark_says_why(tmp_path):
    assert "does not exist" in bench_p50(tmp_path / "none.json", "plain batched", 4)["missing"]
    partial = tmp_path / "fleet.json"
    partial.write_text(json.dumps({"closed_loop": {"plain batched": {"1": {}}}}))
    assert "no closed-loop run of plain batched at N = 4" in \
        bench_p50(partial, "plain batched", 4)["missing"]


def target_alone(scenes, indices) -> dict[int, list[int]]:
    """Hugging Face generate on the packaged target, the prompt built from the JPEG sent."""
    from spec_vlm_control.demo.pair import load_checked, open_pair
    pair = open_pair()
    target = load_checked(pair, "fp32").target
    model = target.adapter.model
    answers = {}
    with torch.inference_mode():
        for i in indices:
            prompt = target.prompts.build(scenes[i].instruction,
                                          Image.open(io.BytesIO(scenes[i].jpeg)).convert("RGB"))
            ids = prompt.input_ids
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 mm_token_type_ids=(ids == target.adapter.image_token_id).int(),
                                 **prompt.vision, do_sample=False,
                                 max_new_tokens=pair.max_new_tokens)
            answers[i] = out[0, ids.shape[1]:].tolist()
    return answers


@pytest.mark.slow   # node processes
def test_two_robots_live_every_decision_answered_as_the_target_alone(tmp_path):
    bench = tmp_path / "fleet.json"
    bench.write_text(json.dumps({"closed_loop": {"cloud_led batched": {
        str(ROBOTS): {"p50_s": 0.1234, "p99_s": 0.2, "decisions": 30}}}}))
    out = tmp_path / "live"
    domains = ",".join(str(next_domain_id()) for _ in range(ROBOTS + 1))
    result = subprocess.run(
        [str(SPEC_VLM), "fleet-live", "--robots", str(ROBOTS), "--decisions", str(DECISIONS),
         "--think-s", "0.1", "--variants", "cloud_led", "--scenes", str(SCENES),
         "--domains", domains, "--bench", str(bench), "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "p50 123 ms" in result.stdout                  # fleet-bench's, beside the live one

    results = json.loads((out / "fleet_live.json").read_text())
    assert (out / "fleet_live.png").stat().st_size > 0
    assert {"config", "machine", "variants", "wall_s"} <= set(results)
    assert len(results["machine"]["load_average_before"]) == 3
    assert len(results["machine"]["load_average_after"]) == 3
    assert results["config"]["domains"] == [int(d) for d in domains.split(",")]
    run = results["variants"]["cloud_led batched"]
    assert run["bench"]["p50_s"] == 0.1234
    decisions = run["decisions"]
    assert sorted((d["robot"], d["index"]) for d in decisions) == \
        [(r, i) for r in range(ROBOTS) for i in range(DECISIONS + 1)]
    assert all(d["ok"] and d["total_s"] > 0 for d in decisions), decisions
    summary = run["summary"]
    assert summary["decisions"] == ROBOTS * DECISIONS and summary["failed"] == 0
    assert summary["p50_s"] <= summary["p99_s"]
    assert set(summary["per_robot"]) == {f"robot{r}" for r in range(ROBOTS)}

    from spec_vlm_control.fleet.workload import render
    from spec_vlm_control.demo.pair import open_pair
    scenes = render(SCENES, 900, open_pair().task_mix)
    reference = target_alone(scenes, {d["scene"] for d in decisions})
    for d in decisions:
        assert d["tokens"] == reference[d["scene"]], d
        assert d["same_as_target"]
