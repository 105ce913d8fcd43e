"""The ROS graph end to end: edge and cloud in two ROS domains joined only by the bridge
(zenoh on loopback, emulated link latency), tiny Qwen2-VL checkpoints loaded from disk."""
import time

import pytest
from harness import start_bridges
from robot_site import MAX_NEW_TOKENS, Robot, start_cloud, start_edge
from tiny_models import INSTRUCTION, jpeg_frame, reference_greedy, save_tiny_vlm

from spec_vlm_control import topics
from spec_vlm_control.graphs import CAMERA, ROBOT_BRIDGE
from spec_vlm_control.msg import Verdict


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp("target"), seed=3)


@pytest.fixture(scope="module")
def exact_exit_target(tmp_path_factory):
    """A target whose exit at layer 0 predicts its final verdicts exactly, with 15 more layers
    of compute after it: early verdicts are right and arrive well before the final ones."""
    return save_tiny_vlm(tmp_path_factory.mktemp("exact_exit"), seed=3, layers=16,
                         silent_after=0)


def test_decision_over_the_bridge_is_lossless_and_replays_from_the_edges_bag(
        ros_graph, cloud_graph, config_dir, exact_exit_target, tmp_path):
    tiny_target = exact_exit_target
    start_bridges(ros_graph, cloud_graph, config_dir, latency_ms=25.0)
    start_cloud(cloud_graph, config_dir, tiny_target, exit_layer=0)
    # The target itself as the draft: a pair that always agrees, and exits that are right,
    # so the blocks drafted on early verdicts are used (preemptive hits).
    bag = tmp_path / "run"
    edge = start_edge(ros_graph, config_dir, tiny_target, mode="preemptive", block_size=3,
                      record=str(bag))
    jpeg = jpeg_frame(seed=5)
    robot = Robot(ros_graph, jpeg)
    try:
        robot.instruct(INSTRUCTION)
        ros_graph.wait_for(lambda: robot.finished(1) and robot.stats, 120,
                           "the final verified tokens and the request's statistics")
    finally:
        robot.close()

    tokens, text = reference_greedy(tiny_target, INSTRUCTION, jpeg, MAX_NEW_TOKENS)
    assert robot.tokens(1) == tokens
    assert robot.text(1) == text
    assert [m.seq for m in robot.chunks(1)] == list(range(len(robot.chunks(1))))
    stats = robot.stats[0]
    assert stats.ok and stats.tokens == len(tokens)
    assert stats.early_verdicts == stats.rounds and stats.early_hit_rate == 1.0
    assert stats.preemptive_hits > 0 and stats.preemptive_misses == 0
    # Every final verdict was preceded by the early verdict of the same block.
    first_seen = {}
    for t, v in robot.verdicts:
        first_seen.setdefault((v.round, v.assumed_length, v.stage), t)
    finals = [k for k in first_seen if k[2] == Verdict.STAGE_FINAL]
    assert finals
    for round_, length, _ in finals:
        assert first_seen[(round_, length, Verdict.STAGE_EARLY)] < first_seen[(round_, length,
                                                                              Verdict.STAGE_FINAL)]

    # The edge's bag holds the whole request; its frame replays through the camera node and
    # a fresh edge decides the same action from it.
    assert edge.stop() == 0
    from spec_vlm_control.recording import read_bag
    recorded = {m.topic for m in read_bag(bag)}
    assert {topics.IMAGE, topics.INSTRUCTION, topics.REQUEST, topics.DRAFT, topics.VERDICT,
            topics.VERIFIED_TOKENS, topics.REQUEST_STATS} <= recorded
    ros_graph.start_node(CAMERA, params={"source": "bag", "bag_path": str(bag),
                                         "bag_topic": topics.IMAGE, "loop": True},
                         config_dir=config_dir)
    start_edge(ros_graph, config_dir, tiny_target, mode="pipelined", block_size=3)
    replay = Robot(ros_graph, None)
    try:
        replay.instruct(INSTRUCTION)
        ros_graph.wait_for(lambda: replay.finished(1), 120, "the decision on the replayed frame")
    finally:
        replay.close()
    assert replay.tokens(1) == tokens


@pytest.fixture(scope="module")
def tiny_draft(tmp_path_factory):
    """A different, smaller model with the target's tokenizer: it rarely agrees."""
    return save_tiny_vlm(tmp_path_factory.mktemp("draft"), seed=11, layers=2, hidden=32,
                         heads=2, kv_heads=1)


def test_two_robots_share_one_cloud_verifier(ros_graph, cloud_graph, config_dir, tmp_path,
                                              tiny_target, tiny_draft):
    from conftest import ros_domain
    (tmp_path / "b").mkdir()
    with ros_domain(tmp_path / "b") as second:
        endpoint = start_bridges(ros_graph, cloud_graph, config_dir, latency_ms=10.0,
                                 robot_id="go2-a")
        second.start_node(ROBOT_BRIDGE, {"cloud_endpoint": endpoint, "robot_id": "go2-b"},
                          config_dir=config_dir)
        start_cloud(cloud_graph, config_dir, tiny_target)
        start_edge(ros_graph, config_dir, tiny_draft, robot_id="go2-a", mode="pipelined")
        start_edge(second, config_dir, tiny_target, robot_id="go2-b", mode="cloud_led")
        jpegs = {"go2-a": jpeg_frame(seed=1), "go2-b": jpeg_frame(seed=2)}
        robots = [Robot(ros_graph, jpegs["go2-a"]), Robot(second, jpegs["go2-b"])]
        try:
            for robot in robots:
                robot.instruct(INSTRUCTION)
            for robot in robots:
                robot.graph.wait_for(lambda r=robot: r.finished(1), 120, "both robots' actions")
        finally:
            for robot in robots:
                robot.close()
    for robot, jpeg in zip(robots, jpegs.values()):
        tokens, _ = reference_greedy(tiny_target, INSTRUCTION, jpeg, MAX_NEW_TOKENS)
        assert robot.tokens(1) == tokens
    assert robots[0].tokens(1) != robots[1].tokens(1)   # each got its own image's answer


def test_cloud_death_is_reported_and_a_restarted_cloud_serves_the_next_request(
        ros_graph, cloud_graph, config_dir, tiny_target):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from std_msgs.msg import Bool
    from spec_vlm_control.nodes.common import LATCHED_QOS
    long_answer = 40
    start_bridges(ros_graph, cloud_graph, config_dir, latency_ms=100.0)
    cloud = start_cloud(cloud_graph, config_dir, tiny_target)
    deadline_s = 3.0
    start_edge(ros_graph, config_dir, tiny_target, mode="plain", block_size=1,
               max_new_tokens=long_answer, deadline_s=deadline_s, resend_after_s=0.5)
    failures, errors = [], []
    ros_graph.node.create_subscription(Bool, topics.LINK_FAILED,
                                       lambda m: failures.append((time.monotonic(), m.data)),
                                       LATCHED_QOS)
    ros_graph.node.create_subscription(
        DiagnosticArray, topics.DIAGNOSTICS,
        lambda m: errors.extend((time.monotonic(), s) for s in m.status
                                if s.name.endswith("edge") and s.level == DiagnosticStatus.ERROR),
        10)
    robot = Robot(ros_graph, jpeg_frame(seed=4))
    try:
        robot.instruct(INSTRUCTION)
        ros_graph.wait_for(lambda: len(robot.tokens(1)) >= 2, 60, "the first verified tokens")
        cloud.kill()
        killed_at = time.monotonic()
        ros_graph.wait_for(lambda: errors and any(f for _, f in failures), deadline_s + 10,
                           "the edge to report the failure")
        reported_at = min(t for t, _ in errors)
        assert reported_at - killed_at <= deadline_s + 1.5
        assert not robot.finished(1)
        count = len(robot.chunks(1))
        time.sleep(1.0)
        assert len(robot.chunks(1)) == count          # nothing more for the failed request

        start_cloud(cloud_graph, config_dir, tiny_target)
        robot.instruct(INSTRUCTION)
        ros_graph.wait_for(lambda: robot.finished(2), 120, "the next request after the restart")
        assert len(robot.tokens(2)) > 0
        ros_graph.wait_for(lambda: failures[-1][1] is False, 5, "link_failed to clear")
    finally:
        robot.close()
