"""`spec-vlm demo --quick`, installed, as CI runs it: the whole graph in two ROS domains and
the bridge, on tiny random checkpoints. Their answers are garbage, so what is checked is the
plumbing and the bookkeeping, not the success rate."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tiny_models import save_tiny_vlm

from spec_vlm_control import hops, topics
from spec_vlm_control.core.protocol import DecodingParams
from spec_vlm_control.recording import read_bag
from spec_vlm_control.sim.episode import judge
from spec_vlm_control.sim.scenes import SceneSampler
from spec_vlm_control.sim.world import Pose

pytestmark = pytest.mark.slow  # runs spec-vlm demo: the whole graph of node processes

SPEC_VLM = Path(sys.prefix) / "bin" / "spec-vlm"
MAX_NEW_TOKENS = 10


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory) -> Path:
    """The layout train-demo writes: target/ with its exit adapters in target/exits/, draft/,
    pair.json. The exit layer comes from the adapters."""
    import torch

    from spec_vlm_control.core import exit_training
    from spec_vlm_control.core.exit_head import ExitHead
    from spec_vlm_control.core.models.loading import load_model
    root = tmp_path_factory.mktemp("pair")
    save_tiny_vlm(root / "target", seed=3)
    save_tiny_vlm(root / "draft", seed=11, layers=2, hidden=32, heads=2, kv_heads=1)
    target = load_model(str(root / "target")).adapter
    adapter = ExitHead.new_adapter(target.hidden_size, torch.float32)
    torch.nn.init.normal_(adapter.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    exit_training.save(root / "target" / "exits", {1: adapter},
                       {"model": "tiny target", "fingerprint": target.fingerprint(),
                        "agreement_before": {"1": 0.0}, "agreement_after": {"1": 0.0}})
    (root / "pair.json").write_text(json.dumps({"max_new_tokens": MAX_NEW_TOKENS}))
    return root


def demo(*args, timeout=300):
    return subprocess.run([str(SPEC_VLM), "demo", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd="/")


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(cmdline)
    return found


def test_quick_demo_runs_the_graph_and_writes_a_consistent_record(tiny_pair, tmp_path):
    out = tmp_path / "out"
    # An edge-led mode, so that every decision verifies draft blocks (rounds > 0): with the
    # default cloud_led, a random draft that never agrees is never worth a pass.
    result = demo("--quick", "--models", tiny_pair, "--out", out, "--max-decisions", 3,
                  "--mode", "preemptive")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not processes_mentioning(str(tiny_pair))            # the graph is gone
    assert "tasks succeeded" in result.stdout

    record = json.loads((out / "demo.json").read_text())
    tasks, decisions = record["tasks"], record["decisions"]
    assert record["config"]["exit_layers"] == [1]
    assert record["config"]["exit_adapters"] == str(tiny_pair / "target" / "exits")
    assert [t["seed"] for t in tasks] == [10_000, 10_001]
    assert record["summary"]["succeeded"] == sum(t["succeeded"] for t in tasks)
    for task in tasks:
        scene = SceneSampler(seed=task["seed"]).sample()
        assert task["instruction"] == scene.task.instruction
        assert Pose(**task["start"]) == scene.world.pose
        assert task["succeeded"] == judge(scene.task, scene.world, scene.world.pose,
                                          Pose(**task["end"]))
        assert 1 <= len(task["decisions"]) <= 3
        assert task["trajectory"]
    assert len(decisions) == sum(len(t["decisions"]) for t in tasks)
    for d in decisions:
        stats = d["stats"]
        assert stats["ok"] and 0 < stats["tokens"] <= MAX_NEW_TOKENS == len(d["token_ids"])
        assert stats["rounds"] > 0 and stats["target_passes_per_token"] > 0
        assert len(stats["token_latencies_s"]) == stats["tokens"]
        assert 0 < stats["time_to_first_token_s"] <= stats["first_step_s"] + 1e-6
        assert stats["first_step_s"] <= stats["total_s"] + 1e-3     # float32 fields
        assert d["instruction"] == tasks[d["task"] - 1]["instruction"]
        frame = Image.open(io.BytesIO((out / d["frame"]).read_bytes()))
        assert frame.format == "JPEG" and frame.size == (64, 64)
        # Decoded again by the target alone, the same frame and instruction give the same
        # tokens the graph verified (lossless end to end), in every replayed mode.
        for mode in ("speculative", "stream", "per_token"):
            replay = d["replays"][mode]
            assert replay["same_as_live"] and replay["token_ids"] == d["token_ids"]
            assert replay["total_s"] > 0
        # A 25 ms link each way: one request per token pays at least a round trip a token.
        assert d["replays"]["per_token"]["total_s"] >= 0.05 * stats["tokens"]
        # Live vs live: the edge's cloud-only streaming baseline, same frame, same answer.
        baseline = d["baseline"]
        assert baseline["ok"] and baseline["same_as_live"]
        assert baseline["token_ids"] == d["token_ids"] and baseline["total_s"] > 0
        assert d["frame_wait_s"] >= 0
        # Its hop timeline: every verified block's round trip has every point, and its
        # segments add up to it; the software's part is what models and link leave.
        timeline = d["timeline"]
        complete = [r for r in timeline["round_trips"] if not r["missing"]]
        assert len(complete) == timeline["complete"] >= stats["rounds"] > 0
        for trip in complete:
            assert list(trip["segments_ms"]) == list(hops.SEGMENTS)
            assert sum(trip["segments_ms"].values()) == pytest.approx(trip["total_ms"],
                                                                      abs=1e-3 * len(hops.SEGMENTS))
            assert trip["total_ms"] > 50.0                  # the emulated round trip
            assert trip["overhead_ms"] is not None
        assert timeline["software_ms"] == pytest.approx(
            1000 * (stats["total_s"] - stats["draft_s"]) - timeline["link_ms"]
            - timeline["pass_ms"] - timeline["queue_ms"], abs=1e-3)
        # Its twin (every decision here ran its plan), decided again right after with the
        # sim and the camera paused: same frame, same answer.
        paused = d["paused"]
        assert paused["ok"] and paused["same_frame"] and paused["same_as_live"], \
            (d["task"], d["decision"], {k: v for k, v in paused.items() if k != "timeline"})
        assert paused["request_id"] != d["request_id"] and paused["total_s"] > 0
        assert paused["timeline"]["complete"] >= paused["rounds"] > 0
    summary = record["summary"]
    split = summary["split"]
    assert split["paused_decisions"] == split["paused_same_answer"] == len(decisions)
    for key in ("live_total_ms", "paused_total_ms", "replay_total_ms", "software_ms",
                "contention_ms", "overhead_per_round_trip_ms"):
        assert split[key] is not None, key
    assert summary["hops"]["complete"] == split["complete_round_trips"] > 0
    assert "live vs replay" in result.stdout
    assert (out / "demo_hops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["live_baseline_decisions"] == summary["live_baseline_same_answer"] \
        == len(decisions)
    assert "live vs live" in result.stdout
    goal = summary["goal"]                  # every decision here is of a one-goal task
    assert goal["all"]["decisions"] == len(decisions) and goal["multi_step_tasks"]["decisions"] == 0
    assert goal["all"]["passes_per_token"] == pytest.approx(
        sum(d["stats"]["target_passes"] for d in decisions)
        / sum(d["stats"]["tokens"] for d in decisions))
    assert goal["all"]["live"]["streaming_median_s"] == pytest.approx(
        summary["median_live_baseline_total_s"])
    assert "goal ≤ 0.77× cloud-only streaming" in result.stdout

    messages = list(read_bag(out / "demo_bag"))
    seen = {m.topic for m in messages}
    assert {topics.IMAGE, topics.ODOM, topics.INSTRUCTION, topics.VERIFIED_TOKENS,
            topics.PLAN_STATUS, topics.REQUEST_STATS, topics.SIM_SCENE} <= seen
    assert [m.decode().data for m in messages if m.topic == topics.SIM_SCENE] == [10_000, 10_001]
    stats = [m.decode() for m in messages if m.topic == topics.REQUEST_STATS]
    assert sorted(s.request_id for s in stats) == sorted(     # the live ones and their twins
        [d["request_id"] for d in decisions] + [d["paused"]["request_id"] for d in decisions])
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_without_a_model_pair_says_so(tmp_path):
    result = demo("--quick", "--models", tmp_path / "nothing", "--out", tmp_path, timeout=60)
    assert result.returncode == 2
    assert "is not a demo model pair" in result.stderr


def test_a_graph_that_cannot_start_is_torn_down_with_a_clear_message(tiny_pair, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "target").symlink_to(tiny_pair / "draft")
    (broken / "draft").mkdir()                        # no model in it: refused before the graph
    result = demo("--quick", "--models", broken, "--out", tmp_path / "out", timeout=120)
    assert result.returncode == 2
    assert "no config.json" in result.stderr and "starting the graph" not in result.stdout
    assert not processes_mentioning(str(broken))


def test_ctrl_c_stops_the_whole_graph(tiny_pair, tmp_path):
    import signal
    import time
    log = tmp_path / "demo.log"
    with open(log, "w") as sink:
        process = subprocess.Popen([str(SPEC_VLM), "demo", "--models", str(tiny_pair), "--out",
                                    str(tmp_path / "out")], stdout=sink, stderr=subprocess.STDOUT,
                                   cwd="/")
    try:
        deadline = time.monotonic() + 120
        while "task 1 " not in log.read_text(errors="replace"):     # the graph is up and busy
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert len(processes_mentioning(str(tiny_pair))) >= 3     # demo, edge, cloud
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
    assert "interrupted; the graph was stopped" in log.read_text()
    assert not processes_mentioning(str(tiny_pair))


def test_quick_demo_with_the_committed_pair_does_its_tasks(tmp_path):
    """The README's demo on the trained pair (two tasks that need the image, one of them with
    two goals): the robot does them, closed loop, losslessly."""
    out = tmp_path / "out"
    # Scenes 10014 and 10015 succeeded in every 20-task demo run measured (5 of 5, in 2 and
    # 3-4 of their 8 decisions); 10002/10003 before them failed once in 8 runs (the target
    # turned left and right at its first goal until the decisions ran out).
    result = demo("--quick", "--first-seed", 10_014, "--out", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((out / "demo.json").read_text())
    assert [t["instruction"] for t in record["tasks"]] == [
        "turn towards the purple box", "go to the red box then turn towards the yellow cone"]
    assert all(t["succeeded"] for t in record["tasks"]), record["tasks"]
    for d in record["decisions"]:
        assert all(d["replays"][m]["same_as_live"] for m in ("speculative", "stream", "per_token"))
        # cloud_led, the default: its software part is what one round trip and the cloud's
        # busy time on the request leave of the live time (demo/timeline.py).
        assert d["stats"]["mode"] == DecodingParams.MODE_CLOUD_LED
        timeline = d["timeline"]
        assert 0 < timeline["busy_ms"] < 1000 * d["stats"]["total_s"]
        assert timeline["software_ms"] == pytest.approx(
            1000 * d["stats"]["total_s"] - record["config"]["rtt_ms"] - timeline["busy_ms"],
            abs=1e-3)
        assert timeline["software_ms"] > -1.0            # the busy time is on the critical path
    assert record["summary"]["split"]["software_ms"] is not None
