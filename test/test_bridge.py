"""The bridge joins two ROS domains over zenoh on loopback, carrying only protocol topics."""
import time

from harness import start_bridges

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
