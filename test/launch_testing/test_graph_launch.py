"""launch_testing version of test/test_graph.py's first scenario, for machines with ROS 2
(`launch_test test/launch_testing/test_graph_launch.py`): the cloud and robot sites in two
ROS domains joined by the bridge; the verified tokens equal the target's greedy decoding."""
import tempfile
import unittest
from pathlib import Path

import launch
import launch_testing.actions
import launch_testing.asserts
import pytest
from launch_common import (INSTRUCTION, MAX_NEW_TOKENS, cloud_site, decide, jpeg_frame,
                           reference_greedy, robot_site, save_tiny_vlm)

MODEL = Path(tempfile.mkdtemp()) / "target"


@pytest.mark.launch_test
def generate_test_description():
    save_tiny_vlm(MODEL, seed=3)
    return launch.LaunchDescription(
        cloud_site(MODEL, domain_offset=1)
        + robot_site(MODEL, mode="preemptive", block_size=3)
        + [launch_testing.actions.ReadyToTest()])


class TestDecision(unittest.TestCase):
    def test_verified_tokens_equal_the_targets_greedy_output(self):
        jpeg = jpeg_frame(seed=5)
        tokens, _ = reference_greedy(MODEL, INSTRUCTION, jpeg, MAX_NEW_TOKENS)
        self.assertEqual(decide(0, jpeg), tokens)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
