"""launch_testing version of the cloud-failure scenario: the cloud verifier is killed while
a long answer is being decoded; the edge reports the failure (latched link_failed, error on
/diagnostics) within its deadline and publishes nothing more for that request; a new cloud
verifier serves the next request without restarting the edge."""
import signal
import tempfile
import time
import unittest
from pathlib import Path

import launch
import launch.events.process
import launch_testing.actions
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from launch_common import (BASE_DOMAIN, INSTRUCTION, cloud_site, jpeg_frame,
                           robot_site, save_tiny_vlm)
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool, String

from spec_vlm_control import topics
from spec_vlm_control.msg import VerifiedTokens
from spec_vlm_control.nodes.common import LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS

MODEL = Path(tempfile.mkdtemp()) / "target"
DEADLINE_S = 3.0
CLOUD = {}


@pytest.mark.launch_test
def generate_test_description():
    save_tiny_vlm(MODEL, seed=3)
    cloud, cloud_bridge = cloud_site(MODEL, domain_offset=1, latency_ms=100.0)
    CLOUD["action"] = cloud
    return launch.LaunchDescription(
        [cloud, cloud_bridge]
        + robot_site(MODEL, latency_ms=100.0, mode="plain", block_size=1, max_new_tokens=40,
                     deadline_s=DEADLINE_S, resend_after_s=0.5)
        + [launch_testing.actions.ReadyToTest()])


class TestCloudRestart(unittest.TestCase):
    def test_failure_is_reported_and_a_new_cloud_serves_the_next_request(self, launch_service):
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=BASE_DOMAIN)
        probe = rclpy.create_node("probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        chunks, failed = [], []
        probe.create_subscription(VerifiedTokens, topics.VERIFIED_TOKENS, chunks.append,
                                  PROTOCOL_QOS)
        probe.create_subscription(Bool, topics.LINK_FAILED, lambda m: failed.append(m.data),
                                  LATCHED_QOS)
        image_pub = probe.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
        instruction_pub = probe.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
        jpeg = jpeg_frame(seed=4)

        def spin_until(predicate, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end and not predicate():
                image = CompressedImage(format="jpeg", data=jpeg)
                image.header.stamp = probe.get_clock().now().to_msg()
                image_pub.publish(image)
                executor.spin_once(timeout_sec=0.05)
            return predicate()

        try:
            self.assertTrue(spin_until(lambda: instruction_pub.get_subscription_count() > 0, 60))
            time.sleep(5.0)                        # the edge and the cloud load their models
            instruction_pub.publish(String(data=INSTRUCTION))
            # request ids start at a random boot nonce: count requests in arrival order
            ids = lambda: list(dict.fromkeys(c.request_id for c in chunks))  # noqa: E731
            first = lambda: [c for c in chunks if c.request_id == ids()[0]]  # noqa: E731
            self.assertTrue(spin_until(lambda: len(first()) >= 2, 60))
            launch_service.emit_event(launch.events.process.SignalProcess(
                signal_number=signal.SIGKILL,
                process_matcher=launch.events.matches_action(CLOUD["action"])))
            killed = time.monotonic()
            self.assertTrue(spin_until(lambda: failed and failed[-1], DEADLINE_S + 5))
            self.assertLessEqual(time.monotonic() - killed, DEADLINE_S + 1.5)
            count = len(first())
            spin_until(lambda: False, 1.0)
            self.assertEqual(len(first()), count)
            self.assertFalse(any(c.final for c in first()))

            launch_service.include_launch_description(
                launch.LaunchDescription([cloud_site(MODEL, domain_offset=1)[0]]))
            time.sleep(8.0)                        # the new verifier loads its model
            instruction_pub.publish(String(data=INSTRUCTION))
            self.assertTrue(spin_until(
                lambda: len(ids()) > 1 and any(c.request_id == ids()[1] and c.final
                                               for c in chunks), 120))
        finally:
            probe.destroy_node()
            rclpy.shutdown(context=context)
