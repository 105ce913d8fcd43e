"""launch_testing version of the replay scenario: a camera frame recorded in a rosbag2 (MCAP,
as the edge records it) replays through the camera node, and the decision on it is the
target's own greedy answer."""
import tempfile
import unittest
from pathlib import Path

import launch
import launch_testing.actions
import launch_testing.asserts
import pytest
from launch_common import (INSTRUCTION, MAX_NEW_TOKENS, cloud_site, decide, jpeg_frame,
                           launched, reference_greedy, robot_site, save_tiny_vlm)
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage

from spec_vlm_control import topics
from spec_vlm_control.graphs import CAMERA
from spec_vlm_control.recording import Recorder

WORK = Path(tempfile.mkdtemp())
JPEG = jpeg_frame(seed=5)


@pytest.mark.launch_test
def generate_test_description():
    model = save_tiny_vlm(WORK / "target", seed=3)
    with Recorder(WORK / "run") as bag:
        for i in range(10):
            frame = CompressedImage(format="jpeg", data=JPEG)
            frame.header.stamp.sec = i
            bag.write(topics.IMAGE, "sensor_msgs/msg/CompressedImage",
                      serialize_message(frame), i * 10**8)
    return launch.LaunchDescription(
        cloud_site(model, domain_offset=1)
        + robot_site(model, mode="pipelined", block_size=3)
        + [launched(CAMERA.reading(source="bag", bag_path=str(WORK / "run"),
                                   bag_topic=topics.IMAGE, loop=True)),
           launch_testing.actions.ReadyToTest()])


class TestReplay(unittest.TestCase):
    def test_decision_on_the_replayed_frame_is_the_targets_answer(self):
        tokens, _ = reference_greedy(WORK / "target", INSTRUCTION, JPEG, MAX_NEW_TOKENS)
        self.assertEqual(decide(0, None), tokens)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
