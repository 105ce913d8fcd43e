"""Building blocks of the launch_testing tests: the package's installed executables with the
installed config/*.yaml (the nodes robot.launch.py and cloud.launch.py start, each in a
process of its own as robot_separate.launch.py and cloud_separate.launch.py run them, so
that a test sets each node's parameters and restarts the verifier alone), tiny checkpoints
on disk, and a probe that plays camera and operator in one ROS domain."""
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from ament_index_python.packages import get_package_share_directory
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tiny_models import INSTRUCTION, jpeg_frame, reference_greedy, save_tiny_vlm  # noqa: E402,F401

from spec_vlm_control import topics  # noqa: E402
from spec_vlm_control.graphs import (CLOUD_BRIDGE, EDGE, ROBOT_BRIDGE, VERIFIER,  # noqa: E402
                                     NodeSpec, launch_nodes)
from spec_vlm_control.msg import VerifiedTokens  # noqa: E402
from spec_vlm_control.nodes.common import PROTOCOL_QOS, SENSOR_QOS  # noqa: E402

CONFIG = Path(get_package_share_directory("spec_vlm_control")) / "config"
MAX_NEW_TOKENS = 12
BASE_DOMAIN = int(os.environ.get("ROS_DOMAIN_ID", "0"))


def launched(node: NodeSpec, domain_offset: int = 0, **args):
    """`node` of the graph description as its launch file starts it, in the robot's domain
    (offset 0) or another; `args` fill its launch arguments (else their defaults)."""
    env = {"ROS_DOMAIN_ID": str(BASE_DOMAIN + domain_offset)}
    (action,) = launch_nodes([node], str(CONFIG), lambda arg: args.get(arg.name, arg.default),
                             additional_env=env)
    return action


def cloud_site(model: Path, domain_offset: int, latency_ms: float = 25.0) -> list:
    # not respawned: the tests kill the verifier and start a new one themselves
    verifier = replace(VERIFIER, respawn=False).reading(dtype="fp64", exit_layers=[1])
    return [launched(verifier, domain_offset, target_model=str(model)),
            launched(CLOUD_BRIDGE.reading(link_latency_ms=latency_ms), domain_offset)]


def robot_site(model: Path, domain_offset: int = 0, robot_id: str = "go2",
               latency_ms: float = 25.0, **edge) -> list:
    args = {"draft_model": str(model), "robot_id": robot_id}
    return [launched(ROBOT_BRIDGE.reading(link_latency_ms=latency_ms), domain_offset, **args),
            launched(EDGE.reading(dtype="fp64", max_new_tokens=MAX_NEW_TOKENS,
                                  max_frame_age_at_decision_s=5.0, **edge),
                     domain_offset, **args)]


def decide(domain_offset: int, jpeg, timeout: float = 120.0) -> list:
    """Publish frames (unless jpeg is None: a camera node does) and one instruction in a
    robot's domain; return the verified token ids of the answer."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=BASE_DOMAIN + domain_offset)
    probe = rclpy.create_node("probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    try:
        chunks = []
        probe.create_subscription(VerifiedTokens, topics.VERIFIED_TOKENS, chunks.append,
                                  PROTOCOL_QOS)
        image_pub = probe.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
        instruction_pub = probe.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
        sent = False
        end = time.monotonic() + timeout
        while time.monotonic() < end and not any(c.final for c in chunks):
            if jpeg is not None:
                image = CompressedImage(format="jpeg", data=jpeg)
                image.header.stamp = probe.get_clock().now().to_msg()
                image_pub.publish(image)
            if not sent and instruction_pub.get_subscription_count() > 0:
                time.sleep(5.0)            # the edge and the cloud load their models
                instruction_pub.publish(String(data=INSTRUCTION))
                sent = True
            executor.spin_once(timeout_sec=0.05)
        return [t for c in sorted(chunks, key=lambda c: c.seq) for t in c.token_ids]
    finally:
        probe.destroy_node()
        rclpy.shutdown(context=context)
