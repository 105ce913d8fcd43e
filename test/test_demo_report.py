"""The demo's goal figures: which decisions count as multi-step and long, and the medians
and ratios against cloud-only streaming."""
import pytest

from spec_vlm_control.demo import report
from spec_vlm_control.sim.episode import TaskResult
from spec_vlm_control.sim.world import Pose

TWO_GOAL = "go to the red ball then turn towards the blue box"
LONG = "turn_left 30 ; forward 1.0 ; turn_right 20"


def _decision(task, answer, live, baseline, replay, stream, passes, tokens, ok=True):
    return {"task": task, "answer": answer,
            "stats": {"ok": ok, "total_s": live, "target_passes": passes, "tokens": tokens},
            "baseline": {"ok": baseline is not None, "total_s": baseline},
            "replays": {"speculative": {"total_s": replay}, "stream": {"total_s": stream}}}


def _task(instruction):
    return TaskResult(seed=0, instruction=instruction, start=Pose(0, 0, 0), end=Pose(0, 0, 0),
                      succeeded=True, decisions=[], trajectory=[])


def test_goal_groups_decisions_by_task_and_answer_length():
    results = [_task(TWO_GOAL), _task("go to the blue box")]
    decisions = [_decision(1, LONG, 0.06, 0.10, 0.05, 0.10, 3, 9),
                 _decision(1, "turn_right 20", 0.04, 0.05, 0.04, 0.05, 1, 3),
                 _decision(1, LONG, 0.08, None, 0.07, 0.10, 3, 9),       # no live baseline
                 _decision(2, LONG, 0.09, 0.06, 0.09, 0.09, 4, 9),
                 _decision(2, LONG, 1.0, 1.0, 1.0, 1.0, 9, 9, ok=False)]  # failed: not counted
    goal = report._goal(results, decisions)
    multi = goal["multi_step_tasks"]
    assert multi["decisions"] == 3 and multi["passes_per_token"] == pytest.approx(7 / 21)
    assert multi["replay"]["median_s"] == pytest.approx(0.05)
    assert multi["replay"]["streaming_median_s"] == pytest.approx(0.10)
    assert multi["replay"]["over_streaming"] == pytest.approx(0.5) and multi["replay"]["met"]
    # live vs live only where the decision has its baseline: medians of (0.06, 0.04), (0.10, 0.05)
    assert multi["live"]["over_streaming"] == pytest.approx(0.05 / 0.075)
    assert multi["live"]["met"] and multi["passes_met"]
    long = goal["long_answers"]
    assert long["decisions"] == 3 and long["replay"]["over_streaming"] == pytest.approx(0.07 / 0.10)
    assert goal["all"]["decisions"] == 4
    assert goal["all"]["live"]["over_streaming"] == pytest.approx(1.0)
    assert not goal["all"]["live"]["met"]
    text = report.goal({"goal": goal})
    assert "multi step tasks (3 decisions)" in text and "not met" in text


def test_goal_without_decisions_has_no_ratio():
    goal = report._goal([_task(TWO_GOAL)], [])
    assert goal["multi_step_tasks"]["replay"]["over_streaming"] is None
    assert goal["multi_step_tasks"]["passes_per_token"] is None
    assert "—" in report.goal({"goal": goal})
