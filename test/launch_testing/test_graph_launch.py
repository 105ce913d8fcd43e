"""launch_testing version of test/test_graph.py, for machines with ROS 2 installed
(`launch_test test/launch_testing/test_graph_launch.py` or `colcon test`).

Launches the cloud and robot halves from the package's launch files' building blocks — the
installed executables with the installed config/*.yaml — on tiny checkpoints written by
test/tiny_models.py, both halves joined by the bridge on loopback, and checks that the
verified tokens equal the target's own greedy decoding. These machines have no `launch`
package, so the same scenario runs here as test/test_graph.py with the process harness.
"""
import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

import launch
import launch_ros.actions
import launch_testing.actions
import launch_testing.asserts
import pytest
import rclpy
from ament_index_python.packages import get_package_share_directory
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tiny_models import INSTRUCTION, jpeg_frame, reference_greedy, save_tiny_vlm  # noqa: E402

from spec_vlm_control import topics  # noqa: E402
from spec_vlm_control.msg import VerifiedTokens  # noqa: E402
from spec_vlm_control.nodes.common import PROTOCOL_QOS, SENSOR_QOS  # noqa: E402

MODEL = Path(tempfile.mkdtemp()) / "target"
MAX_NEW_TOKENS = 12


@pytest.mark.launch_test
def generate_test_description():
    save_tiny_vlm(MODEL, seed=3)
    config = Path(get_package_share_directory("spec_vlm_control")) / "config"
    cloud_domain = str(int(os.environ.get("ROS_DOMAIN_ID", "0")) + 1)
    model = {"model": str(MODEL), "dtype": "fp64"}
    return launch.LaunchDescription([
        launch_ros.actions.Node(package="spec_vlm_control", executable="cloud", name="cloud",
                                parameters=[str(config / "cloud.yaml"), {**model, "exit_layers": [1]}],
                                additional_env={"ROS_DOMAIN_ID": cloud_domain}),
        launch_ros.actions.Node(package="spec_vlm_control", executable="bridge", name="bridge",
                                parameters=[str(config / "bridge_cloud.yaml"),
                                            {"link_latency_ms": 25.0}],
                                additional_env={"ROS_DOMAIN_ID": cloud_domain}),
        launch_ros.actions.Node(package="spec_vlm_control", executable="bridge", name="bridge",
                                parameters=[str(config / "bridge_robot.yaml"),
                                            {"link_latency_ms": 25.0}]),
        launch_ros.actions.Node(package="spec_vlm_control", executable="edge", name="edge",
                                parameters=[str(config / "edge.yaml"),
                                            {**model, "mode": "preemptive", "block_size": 3,
                                             "max_new_tokens": MAX_NEW_TOKENS,
                                             "max_frame_age_s": 5.0}]),
        launch_testing.actions.ReadyToTest(),
    ])


class TestDecision(unittest.TestCase):
    def test_verified_tokens_equal_the_targets_greedy_output(self):
        rclpy.init()
        node = rclpy.create_node("probe")
        try:
            chunks = []
            node.create_subscription(VerifiedTokens, topics.VERIFIED_TOKENS, chunks.append,
                                     PROTOCOL_QOS)
            image_pub = node.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
            instruction_pub = node.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
            jpeg = jpeg_frame(seed=5)
            sent = False
            end = time.monotonic() + 120
            while time.monotonic() < end and not any(c.final for c in chunks):
                image = CompressedImage(format="jpeg", data=jpeg)
                image.header.stamp = node.get_clock().now().to_msg()
                image_pub.publish(image)
                if not sent and instruction_pub.get_subscription_count() > 0:
                    time.sleep(5.0)        # the edge and cloud load their models
                    instruction_pub.publish(String(data=INSTRUCTION))
                    sent = True
                rclpy.spin_once(node, timeout_sec=0.05)
            tokens, _ = reference_greedy(MODEL, INSTRUCTION, jpeg, MAX_NEW_TOKENS)
            got = [t for c in sorted(chunks, key=lambda c: c.seq) for t in c.token_ids]
            self.assertEqual(got, tokens)
        finally:
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
