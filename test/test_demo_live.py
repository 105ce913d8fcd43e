"""The demo's driver with a real edge node: it instructs only once the edge holds a frame of
the world as it is now (the frame race), and the edge's live baseline (cloud-only streaming
beside each decision, ABBA order) answers token for token as the speculative request does,
without reaching verified_tokens."""
import threading
import time

import pytest
from robot_site import start_cloud, start_edge
from sensor_msgs.msg import CompressedImage
from tiny_models import INSTRUCTION, jpeg_frame, reference_greedy, save_tiny_vlm

from spec_vlm_control import topics
from spec_vlm_control.core.prefix import prefix_hash
from spec_vlm_control.core.protocol import MODES
from spec_vlm_control.msg import CommittedTokens, DecodeRequest
from spec_vlm_control.nodes.common import PROTOCOL_QOS, SENSOR_QOS
from spec_vlm_control.nodes.demo_driver import DemoDriver

pytestmark = pytest.mark.slow   # node processes
ANSWER_TOKENS = 6               # a disagreeing draft: a round a token, four decisions


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp("target"), seed=3)


@pytest.fixture(scope="module")
def tiny_draft(tmp_path_factory):
    """Smaller, with the target's tokenizer: it rarely agrees, so blocks are rejected."""
    return save_tiny_vlm(tmp_path_factory.mktemp("draft"), seed=11, layers=2, hidden=32,
                         heads=2, kv_heads=1)


class Camera:
    """Publishes `jpeg` at 20 Hz, stamped now, unless `paused`."""

    def __init__(self, graph, jpeg: bytes):
        self.graph, self.jpeg, self.paused = graph, jpeg, False
        self.pub = graph.node.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.05):
            if not self.paused:
                msg = CompressedImage(format="jpeg", data=self.jpeg)
                msg.header.stamp = self.graph.node.get_clock().now().to_msg()
                self.pub.publish(msg)

    def close(self):
        self._stop.set()
        self._thread.join()


def driver_for(graph, tmp_path, **options) -> DemoDriver:
    driver = DemoDriver(graph.context, tmp_path / "bag", request_timeout_s=60.0, **options)
    graph.add_node(driver)
    graph.wait_for(lambda: driver.instruction_pub.get_subscription_count() > 0
                   and driver.edge_frame_ns > 0, 30, "the edge's subscriptions and frames")
    return driver


def test_the_driver_waits_for_the_edge_to_hold_the_new_scenes_frame(ros_graph, config_dir,
                                                                    tiny_target, tmp_path):
    """The old scene's frame stays fresh enough for the edge (5 s); the new scene's reaches
    the edge 1 s after the driver has seen it. Without the wait the edge decides on the old
    one (what 4 task starts in 100 did)."""
    start_edge(ros_graph, config_dir, tiny_target, mode="plain", block_size=2)
    # A stand-in cloud that ends each request at once: only the frame matters here.
    answer = ros_graph.node.create_publisher(CommittedTokens, topics.COMMITTED, PROTOCOL_QOS)
    ros_graph.node.create_subscription(
        DecodeRequest, topics.REQUEST, lambda m: answer.publish(CommittedTokens(
            robot_id=m.robot_id, request_id=m.request_id, start=0, tokens=[],
            hash_after=prefix_hash([]), finished=True)), PROTOCOL_QOS)
    old, new = jpeg_frame(seed=1), jpeg_frame(seed=2)
    camera = Camera(ros_graph, old)
    driver = driver_for(ros_graph, tmp_path)
    try:
        camera.paused = True            # the new scene's frames are on their way to the edge
        time.sleep(0.2)
        driver.fresh_from_ns = driver._now_ns()     # ... the driver has seen one (reset)

        def new_scene_arrives():
            camera.jpeg, camera.paused = new, False
        threading.Timer(1.0, new_scene_arrives).start()
        decision = driver.decide(INSTRUCTION)
    finally:
        camera.close()
        driver.close()
    assert decision.request_id and decision.jpeg == new
    assert decision.frame_wait_s >= 0.9


def test_the_live_baseline_answers_token_for_token_in_abba_order(
        ros_graph, config_dir, tiny_target, tiny_draft, tmp_path):
    start_cloud(ros_graph, config_dir, tiny_target)
    start_edge(ros_graph, config_dir, tiny_draft, mode="preemptive", block_size=3,
               max_new_tokens=ANSWER_TOKENS, live_baseline=True)
    jpegs = [jpeg_frame(seed=s) for s in (4, 5, 4, 6)]
    camera = Camera(ros_graph, jpegs[0])
    driver = driver_for(ros_graph, tmp_path, live_baseline=True)
    decisions = []
    try:
        for jpeg in jpegs:
            camera.jpeg = jpeg
            time.sleep(0.15)
            driver.fresh_from_ns = driver._now_ns()
            decisions.append(driver.decide(INSTRUCTION))
    finally:
        camera.close()
        driver.close()
    expected = {jpeg: reference_greedy(tiny_target, INSTRUCTION, jpeg, ANSWER_TOKENS)[0]
                for jpeg in set(jpegs)}
    for d, jpeg in zip(decisions, jpegs):
        assert d.stats["ok"] and d.baseline["ok"], (d.stats, d.baseline)
        assert d.jpeg == jpeg and d.token_ids == expected[jpeg]
        assert d.baseline["token_ids"] == d.token_ids and d.baseline["same_as_live"]
        assert (d.stats["mode"], d.baseline["mode"]) == (MODES["preemptive"], MODES["cloud_led"])
    assert [d.baseline["ran_first"] for d in decisions] == [False, True, True, False]
    # The baseline's requests reached the cloud as requests of their own, its answers only
    # the baseline/ topics: verified_tokens carried the decisions' and nothing else.
    assert set(driver.chunks) == {d.request_id for d in decisions}
    assert len(driver.requests) == 2 * len(decisions)
