"""The bridge joins two ROS domains over zenoh on loopback, carrying only protocol topics."""
import random
import time

from harness import free_port, start_bridges

from spec_vlm_control import topics
from spec_vlm_control.msg import DraftBlock, Verdict
from spec_vlm_control.nodes.common import PROTOCOL_QOS


def collect(graph, msg_type, topic):
    inbox = []
    graph.node.create_subscription(msg_type, topic, lambda m: inbox.append((time.monotonic(), m)),
                                   PROTOCOL_QOS)
    return inbox


def test_protocol_messages_cross_domains_with_emulated_latency(ros_graph, cloud_graph, config_dir):
    assert ros_graph.domain_id != cloud_graph.domain_id
    start_bridges(ros_graph, cloud_graph, config_dir, latency_ms=80.0, robot_id="go2-a")
    drafts = collect(cloud_graph, DraftBlock, topics.DRAFT)
    verdicts = collect(ros_graph, Verdict, topics.VERDICT)
    draft_pub = ros_graph.node.create_publisher(DraftBlock, topics.DRAFT, PROTOCOL_QOS)
    verdict_pub = cloud_graph.node.create_publisher(Verdict, topics.VERDICT, PROTOCOL_QOS)

    sent = {}
    # The first messages may be lost while discovery completes: repeat until one arrives.
    def keep_sending(pub, make, inbox, label):
        n = 0
        while not inbox and n < 200:
            sent.setdefault(label, []).append(time.monotonic())
            pub.publish(make(n))
            n += 1
            time.sleep(0.05)

    keep_sending(draft_pub, lambda n: DraftBlock(robot_id="go2-a", request_id=1, round=n,
                                                  tokens=[5, 6, 7]), drafts, "draft")
    keep_sending(verdict_pub, lambda n: Verdict(robot_id="go2-a", request_id=1, round=n,
                                                 accepted=2, next_token=9), verdicts, "verdict")
    # A verdict for another robot is not delivered to this robot's domain.
    verdict_pub.publish(Verdict(robot_id="go2-b", request_id=1, round=999))
    time.sleep(0.5)

    arrived, block = drafts[0]
    assert list(block.tokens) == [5, 6, 7] and block.robot_id == "go2-a"
    assert arrived - sent["draft"][block.round] >= 0.08      # the emulated one-way latency
    assert all(v.robot_id == "go2-a" for _, v in verdicts)
    assert verdicts[0][1].accepted == 2 and verdicts[0][1].next_token == 9


def test_refuses_insecure_remote_endpoint(ros_graph, config_dir):
    process = ros_graph.start("bridge", config_dir / "bridge_robot.yaml",
                              params={"connect": "['tcp/203.0.113.7:7447']"}, wait=False)
    ros_graph.wait_for(lambda: not process.alive(), 30, "the bridge to refuse and exit")
    assert process.popen.returncode != 0
    assert "without TLS" in process.log()


def open_zenoh(**settings):
    """A raw zenoh session on loopback, standing for the other site (or an intruder)."""
    import zenoh
    from spec_vlm_control.zenoh_link import LinkSettings
    return zenoh.open(LinkSettings(**settings).zenoh_config())


def put_until(session, key_expr, payload, inbox, timeout=10.0):
    """Repeat a put until something arrives (the link may still be connecting)."""
    deadline = time.monotonic() + timeout
    while not inbox and time.monotonic() < deadline:
        session.put(key_expr, payload)
        time.sleep(0.05)
    assert inbox, f"nothing crossed on {key_expr} within {timeout} s"


def test_malformed_and_foreign_uplink_is_dropped_and_the_uplink_keeps_working(cloud_graph,
                                                                            config_dir):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import serialize_message
    from spec_vlm_control.msg import DecodeRequest
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    bridge = cloud_graph.start("bridge", config_dir / "bridge_cloud.yaml",
                               params={"listen": f"['{endpoint}']"})
    requests = collect(cloud_graph, DecodeRequest, topics.REQUEST)
    diagnostics = collect(cloud_graph, DiagnosticArray, topics.DIAGNOSTICS)
    intruder = open_zenoh(connect=[endpoint])
    try:
        good = serialize_message(DecodeRequest(robot_id="go2-a", request_id=7, instruction="sit"))
        put_until(intruder, "spec_vlm/go2-a/up/request", good, requests)   # link is up
        requests.clear()
        bad = [b"", bytes(random.Random(1).randrange(256) for _ in range(512)),
               good[:len(good) // 2], good[:5], b"\x00\x01\x00\x00\xff\xff\xff\x7f"]
        foreign = serialize_message(DecodeRequest(robot_id="go2-b", request_id=8))
        for payload in bad:
            intruder.put("spec_vlm/go2-a/up/request", payload)
        # A robot's key carrying another robot's robot_id (a robot posing as another).
        intruder.put("spec_vlm/go2-a/up/request", foreign)
        intruder.put("spec_vlm/go2-a/up/nonsense", good)
        put_until(intruder, "spec_vlm/go2-a/up/request", good, requests)
        cloud_graph.wait_for(lambda: diagnostics, 5.0, "the bridge to report its drops")
        time.sleep(0.3)
    finally:
        intruder.close()
    assert bridge.alive()
    assert {(m.robot_id, m.request_id) for _, m in requests} == {("go2-a", 7)}
    report = {kv.key: int(kv.value) for kv in diagnostics[-1][1].status[0].values}
    assert report == {"dropped: malformed": len(bad), "dropped: robot_id differs from key": 1,
                      "dropped: unknown key": 1}
    assert "dropped (malformed" in bridge.log()


def test_robot_bridge_takes_downlink_only_for_its_own_robot(ros_graph, config_dir):
    from rclpy.serialization import serialize_message
    from spec_vlm_control.msg import CommittedTokens
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    cloud = open_zenoh(listen=[endpoint])
    try:
        ros_graph.start("bridge", config_dir / "bridge_robot.yaml",
                        params={"connect": f"['{endpoint}']", "robot_id": "go2-a"})
        committed = collect(ros_graph, CommittedTokens, topics.COMMITTED)
        # Tokens claiming to be for go2-b, sent under go2-a's key, then go2-a's own.
        spoofed = serialize_message(CommittedTokens(robot_id="go2-b", request_id=1, tokens=[6]))
        own = serialize_message(CommittedTokens(robot_id="go2-a", request_id=2, tokens=[5]))
        deadline = time.monotonic() + 10
        while not committed and time.monotonic() < deadline:
            cloud.put("spec_vlm/go2-a/down/committed", spoofed)
            cloud.put("spec_vlm/go2-a/down/committed", own)
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        cloud.close()
    assert committed and {(m.robot_id, m.request_id) for _, m in committed} == {("go2-a", 2)}
