"""launch_testing version of test/test_graph.py's two-robot scenario: two robot sites (own
ROS domains, own bridges) share one cloud verifier and both get the target's own answers."""
import tempfile
import threading
import unittest
from pathlib import Path

import launch
import launch_testing.actions
import launch_testing.asserts
import pytest
from launch_common import (INSTRUCTION, MAX_NEW_TOKENS, cloud_site, decide, jpeg_frame,
                           reference_greedy, robot_site, save_tiny_vlm)

MODELS = Path(tempfile.mkdtemp())


@pytest.mark.launch_test
def generate_test_description():
    target = save_tiny_vlm(MODELS / "target", seed=3)
    draft = save_tiny_vlm(MODELS / "draft", seed=11, layers=2, hidden=32, heads=2, kv_heads=1)
    return launch.LaunchDescription(
        cloud_site(target, domain_offset=2)
        + robot_site(draft, domain_offset=0, robot_id="go2-a", mode="pipelined")
        + robot_site(target, domain_offset=1, robot_id="go2-b", mode="cloud_led")
        + [launch_testing.actions.ReadyToTest()])


class TestTwoRobots(unittest.TestCase):
    def test_both_robots_get_the_targets_answers_concurrently(self):
        jpegs = [jpeg_frame(seed=1), jpeg_frame(seed=2)]
        results = [None, None]
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, decide(i, jpegs[i])))
                   for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for got, jpeg in zip(results, jpegs):
            tokens, _ = reference_greedy(MODELS / "target", INSTRUCTION, jpeg, MAX_NEW_TOKENS)
            self.assertEqual(got, tokens)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
