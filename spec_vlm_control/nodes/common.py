"""What every node of the package shares: declared parameters, QoS profiles, a main loop.

Each node module has a PARAMETERS table (name -> (default, description)); the node declares
exactly these, config/*.yaml sets some of them, and the README documents all of them (a
static test keeps the three in step).
"""
from __future__ import annotations

import signal

from typing import Callable

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from spec_vlm_control.topics import PROTOCOL_DEPTH

PROTOCOL_QOS = QoSProfile(depth=PROTOCOL_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
SENSOR_QOS = qos_profile_sensor_data


def declare_parameters(node: Node, table: dict) -> dict:
    """Declare every parameter of `table` with its description; return their values."""
    return {name: node.declare_parameter(name, default, ParameterDescriptor(
        description=text)).value for name, (default, text) in table.items()}


def spin(make_node: Callable[[], Node], args=None, threads: int = 2) -> int:
    """Run one node until Ctrl-C / SIGTERM / shutdown, then let it close cleanly (its
    `close()` may still publish, e.g. a final stop)."""
    # A process started in the background of a non-interactive shell inherits SIGINT as
    # ignored; a node must still stop on it (ros2 launch and the demo stop nodes with it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = make_node()
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    try:
        # Waking up now and then lets Python run its SIGINT handler: a node with nothing
        # to do (a camera whose odometry stopped) would otherwise sleep through Ctrl-C.
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        close = getattr(node, "close", None)
        if close is not None:
            close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
