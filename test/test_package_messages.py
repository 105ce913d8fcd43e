"""The generated protocol messages import from the installed package and cross processes."""
import subprocess
import sys
import textwrap
import threading

from harness import ros_env

from spec_vlm_control.msg import DraftBlock, Verdict

PUBLISHER = textwrap.dedent("""
    import time, rclpy
    from spec_vlm_control.msg import DraftBlock
    rclpy.init()
    node = rclpy.create_node("draft_publisher")
    pub = node.create_publisher(DraftBlock, "draft_blocks", 10)
    msg = DraftBlock(robot_id="go2-7", request_id=(7 << 32) | 42, round=3, assumed_length=5,
                     assumed_hash=2**64 - 3, tokens=[11, 12, 13],
                     support_sizes=[2], support_ids=[11, 40], support_probs=[0.75, 0.25])
    end = time.monotonic() + 20
    while time.monotonic() < end:
        pub.publish(msg)
        time.sleep(0.05)
""")


def test_message_types_are_generated_next_to_the_modules():
    import spec_vlm_control
    import spec_vlm_control.msg as msg
    assert msg.__file__.startswith(spec_vlm_control.__path__[0])
    assert Verdict.STAGE_EARLY == 0 and Verdict.STAGE_FINAL == 1


def test_draft_block_crosses_between_processes(ros_graph):
    received = []
    got = threading.Event()

    def on_block(msg):
        received.append(msg)
        got.set()

    ros_graph.node.create_subscription(DraftBlock, "draft_blocks", on_block, 10)
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER],
                                 env=ros_env(ros_graph.domain_id), cwd="/",
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert got.wait(20), publisher.stdout.read().decode() if publisher.poll() else "no message"
    finally:
        publisher.kill()
        publisher.wait()
    msg = received[0]
    assert (msg.robot_id, msg.request_id, msg.round) == ("go2-7", (7 << 32) | 42, 3)  # RequestIds
    assert (msg.assumed_length, msg.assumed_hash) == (5, 2**64 - 3)
    assert list(msg.tokens) == [11, 12, 13]
    assert list(msg.support_ids) == [11, 40] and list(msg.support_probs) == [0.75, 0.25]
