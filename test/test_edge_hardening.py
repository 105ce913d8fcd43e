"""The edge node against what the network can send it: bad camera frames (undecodable, too
large, claiming huge dimensions, stamped in the future or before the epoch), a decision
with no usable frame, a spoofed "finished" that cuts an answer short, the recovery after a
link failure; and every robot-side node refusing a bad parameter at startup."""
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from robot_site import MAX_NEW_TOKENS
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool, String
from tiny_models import INSTRUCTION, jpeg_frame, save_tiny_vlm

from spec_vlm_control import graphs, topics
from spec_vlm_control.core.prefix import prefix_hash
from spec_vlm_control.msg import (CommittedTokens, DecodeRequest, PlanStatus, RequestStats,
                                  VerifiedTokens)
from spec_vlm_control.nodes.common import LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS
from spec_vlm_control.processes import free_port

MAX_IMAGE_BYTES = 20_000


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp("target"), seed=3)


def claiming(jpeg: bytes, width: int, height: int) -> bytes:
    at = jpeg.index(b"\xff\xc0") + 5
    return jpeg[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 4:]


class Site:
    """The robot's domain as this test drives it: a stand-in camera, instructions, and what
    the edge and controller say, in the order this process hears it."""

    def __init__(self, graph):
        self.graph, node = graph, graph.node
        self.events: list[tuple[str, object]] = []
        self.requests: list[DecodeRequest] = []
        self.bad_frames = 0
        self.spoof_finished = True
        for kind, msg_type, topic, qos in (
                ("link", Bool, topics.LINK_FAILED, LATCHED_QOS),
                ("chunk", VerifiedTokens, topics.VERIFIED_TOKENS, PROTOCOL_QOS),
                ("stats", RequestStats, topics.REQUEST_STATS, PROTOCOL_QOS),
                ("plan", PlanStatus, topics.PLAN_STATUS, PROTOCOL_QOS)):
            node.create_subscription(msg_type, topic,
                                     lambda m, k=kind: self.events.append((k, m)), qos)
        node.create_subscription(DecodeRequest, topics.REQUEST, self._on_request, PROTOCOL_QOS)
        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, 10)
        self.image_pub = node.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
        self.instruction_pub = node.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
        self.committed_pub = node.create_publisher(CommittedTokens, topics.COMMITTED,
                                                   PROTOCOL_QOS)
        self._stop = threading.Event()
        self._camera: threading.Thread | None = None

    def _on_request(self, msg: DecodeRequest) -> None:
        self.requests.append(msg)
        if self.spoof_finished:
            # What a cloud sends about a session that a Cancel from elsewhere has ended.
            self.committed_pub.publish(CommittedTokens(
                robot_id=msg.robot_id, request_id=msg.request_id, start=0, tokens=[],
                hash_after=prefix_hash([]), finished=True))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("edge"):
                values = {kv.key: kv.value for kv in status.values}
                self.bad_frames = int(values.get("bad_frames", self.bad_frames))

    def frame(self, data: bytes, ahead_s: float = 0.0, sec: int | None = None,
              fmt: str = "jpeg") -> None:
        msg = CompressedImage(format=fmt, data=data)
        now_ns = self.graph.node.get_clock().now().nanoseconds + int(ahead_s * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 10**9)
        if sec is not None:
            msg.header.stamp.sec = sec
        self.image_pub.publish(msg)

    def start_camera(self, jpeg: bytes) -> None:
        def run():
            while not self._stop.wait(0.05):
                self.frame(jpeg)
        self._camera = threading.Thread(target=run, daemon=True)
        self._camera.start()

    def instruct(self) -> None:
        self.instruction_pub.publish(String(data=INSTRUCTION))

    def of(self, kind: str, request_id: int | None = None) -> list:
        return [m for k, m in self.events if k == kind
                and (request_id is None or m.request_id == request_id)]

    def wait_stats(self, count: int) -> RequestStats:
        self.graph.wait_for(lambda: len(self.of("stats")) >= count, 30, f"{count} request stats")
        return self.of("stats")[count - 1]

    def close(self) -> None:
        self._stop.set()
        if self._camera is not None:
            self._camera.join()


@pytest.mark.parametrize("colocated", [False, True], ids=["alone", "robot_site"])
def test_the_edge_survives_bad_frames_and_ends_every_plan(ros_graph, config_dir, tiny_target,
                                                          colocated):
    """The edge alone, and in the `robot_site` process with its bridge (the launch files'
    layout; the bridge has no cloud to reach, the cloud shares the edge's domain)."""
    site = Site(ros_graph)
    model = {"model": str(tiny_target), "dtype": "fp64"}
    edge_params = {"mode": "plain", "block_size": 2, "max_new_tokens": MAX_NEW_TOKENS,
                   "max_frame_age_at_decision_s": 5.0, "max_image_bytes": MAX_IMAGE_BYTES}
    # Started side by side; the cloud is paused (SIGSTOP) until the last part.
    if colocated:
        edge = ros_graph.start_node(graphs.ROBOT_SITE, {
            "draft_model": str(tiny_target), "cloud_endpoint": f"tcp/127.0.0.1:{free_port()}"},
            {"edge": {"dtype": "fp64", **edge_params}}, config_dir=config_dir, wait=False)
    else:
        edge = ros_graph.start("edge", config_dir / "edge.yaml", wait=False,
                               params={**model, **edge_params})
    cloud = ros_graph.start("cloud", config_dir / "cloud.yaml", params=model, wait=False)
    ros_graph.start("controller", config_dir / "controller.yaml", wait=False)
    ros_graph.wait_for_log(cloud, "ready:")
    os.kill(cloud.popen.pid, signal.SIGSTOP)
    ros_graph.wait_for_log(edge, "ready:")
    ros_graph.wait_for_log(ros_graph.processes[-1], "controller ready")
    ros_graph.wait_for(lambda: site.image_pub.get_subscription_count() > 0
                       and site.instruction_pub.get_subscription_count() > 0, 20,
                       "the edge's subscriptions")
    good = jpeg_frame(seed=4)
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), np.uint8)
    oversized = cv2.imencode(".png", noise)[1].tobytes()          # a whole image, too many bytes
    assert len(oversized) > MAX_IMAGE_BYTES
    bad = [dict(data=good[: len(good) // 2]),                      # truncated
           dict(data=bytes(np.random.default_rng(1).integers(0, 256, 3000, np.uint8))),
           dict(data=claiming(good, 65535, 65535)),                # a 4 kB "4.3 gigapixel" image
           dict(data=oversized, fmt="png"),
           dict(data=good, ahead_s=5.0),                           # from the future
           dict(data=good, sec=-1)]                                # before the epoch

    # Bad frames only: the edge stays up, counts them, and refuses to decide, saying why.
    for frame in bad:
        site.frame(**frame)
        time.sleep(0.1)
    ros_graph.wait_for(lambda: site.bad_frames == len(bad), 10, "the bad frames to be counted")
    assert edge.alive()
    site.instruct()
    refused = site.wait_stats(1)
    assert not refused.ok and refused.error.startswith("not started: no usable camera frame")
    assert f"{len(bad)} bad frames dropped" in refused.error
    assert refused.request_id >> 32                # ids carry the edge's boot nonce
    time.sleep(0.3)
    assert not site.requests                       # nothing went to the cloud

    # A good frame, then bad ones: the good one is still what a decision uses. The cloud is
    # paused; a spoofed "finished" ends the request with no tokens and no final chunk: failed.
    site.frame(good)
    time.sleep(0.1)
    for frame in bad[:2]:
        site.frame(**frame)
        time.sleep(0.1)
    site.instruct()
    cut = site.wait_stats(2)
    assert len(site.requests) == 1 and bytes(site.requests[0].image.data) == good
    assert cut.request_id == site.requests[0].request_id == refused.request_id + 1
    assert not cut.ok and "without its final chunk" in cut.error
    ros_graph.wait_for(lambda: site.of("link") and site.of("link")[-1].data, 5,
                       "link_failed to be reported")

    # The cloud resumes: the next answer is taken by the controller, not refused because
    # of the earlier failure: link_failed clears before its first verified chunk.
    site.spoof_finished = False
    os.kill(cloud.popen.pid, signal.SIGCONT)
    site.start_camera(good)
    try:
        time.sleep(0.3)
        site.instruct()
        answered = site.wait_stats(3)
        assert answered.ok, answered.error
        chunks = site.of("chunk", answered.request_id)
        assert chunks and chunks[-1].final
        first_chunk = next(i for i, (k, m) in enumerate(site.events)
                           if k == "chunk" and m.request_id == answered.request_id)
        links = [(i, m.data) for i, (k, m) in enumerate(site.events) if k == "link"]
        assert [data for _, data in links] == [False, True, False]
        assert links[-1][0] < first_chunk
        ros_graph.wait_for(lambda: site.of("plan", answered.request_id), 10,
                           "the controller's verdict on the plan")
        assert all(p.detail != "decode link failed" for p in site.of("plan", answered.request_id))
    finally:
        site.close()
    assert edge.alive()


@pytest.mark.parametrize("executable, parameter, value", [
    ("edge", "block_size", 0),
    ("camera", "jpeg_quality", 101),
    ("sim", "rate_hz", 0.0),
])
def test_a_bad_parameter_ends_the_node_with_one_line(ros_graph, config_dir, executable,
                                                     parameter, value):
    process = ros_graph.start(executable, config_dir / f"{executable}.yaml",
                              params={parameter: value, "model": "unused"}
                              if executable == "edge" else {parameter: value}, wait=False)
    assert process.popen.wait(timeout=60) == 1
    lines = process.log().strip().splitlines()
    assert len(lines) == 1 and f"parameter '{parameter}' = {value}" in lines[0], lines
