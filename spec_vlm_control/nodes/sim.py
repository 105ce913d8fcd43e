"""`sim` node: the simulated Go2 world, for running the whole graph on a laptop.

Integrates velocity commands from `cmd_vel` into the robot's pose in the room of scene
`sim_seed` under task mix `sim_task_mix` (spec_vlm_control.sim, Go2-like speed limits,
motion stops at contact) and
publishes odometry and the forward range reading. The camera node's `sim` source renders the
ego view from that odometry; it must use the same `sim_seed` (and its default image size).
A seed on `sim/scene` moves both to that scene's room and start pose, so one running graph
can do task after task (the demo) without restarting a node.

A command with a non-finite or absurd component (beyond `cmd_limit`) is corrupt: it is
ignored with a warning (as if lost), never clamped into motion.

Subscribes  cmd_vel (geometry_msgs/Twist), sim/scene (std_msgs/UInt32, latched)
Publishes   odom (nav_msgs/Odometry), range (sensor_msgs/Range)
"""
from __future__ import annotations

import math
import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import Range as RangeMsg
from std_msgs.msg import UInt32

from spec_vlm_control import topics
from spec_vlm_control.nodes.common import (LATCHED_QOS, SENSOR_QOS, OneOf, Range,
                                           declare_parameters, spin)
from spec_vlm_control.sim.scenes import DEFAULT_TASK_MIX, TASK_MIXES, SceneSampler
from spec_vlm_control.sim.world import BodyVelocity

POSITIVE = Range(0.0, low_open=True)

PARAMETERS = {
    "sim_seed": (0, "scene seed (room, objects, start pose); the camera's must be the same",
                 Range(0)),
    "sim_task_mix": (DEFAULT_TASK_MIX, "the scene sampler's task mix (the model pair's "
                                       "pair.json task_mix); the camera's must be the same",
                     OneOf(tuple(TASK_MIXES))),
    "rate_hz": (50.0, "integration and odometry rate", Range(0.0, 1000.0, low_open=True)),
    "cmd_timeout_s": (0.5, "a velocity command older than this counts as zero, as on the Go2",
                      POSITIVE),
    "range_max_m": (5.0, "reach of the forward range sensor", POSITIVE),
    "cmd_limit": (10.0, "a cmd_vel component beyond +-this (m/s, rad/s) marks the command "
                        "corrupt: it is ignored, not clamped to the speed limits", POSITIVE),
    "paused": (False, "hold the world: no stepping, commands, odometry or range (settable "
                      "while running: the demo's paused twins decide without the sim)"),
}


class SimNode(Node):
    def __init__(self):
        super().__init__("sim")
        self.p = declare_parameters(self, PARAMETERS)
        self._load(self.p["sim_seed"])
        self.bad_cmds = 0
        self.create_subscription(Twist, topics.CMD_VEL, self._on_cmd, 10)
        self.create_subscription(UInt32, topics.SIM_SCENE, lambda m: self._load(m.data),
                                 LATCHED_QOS)
        self.odom_pub = self.create_publisher(Odometry, topics.ODOM, 10)
        self.range_pub = self.create_publisher(RangeMsg, topics.RANGE, SENSOR_QOS)
        self.last = time.monotonic()
        self.create_timer(1.0 / self.p["rate_hz"], self._step)
        self.get_logger().info(f"ready: scene {self.seed}")

    def _load(self, seed: int):
        """Scene `seed`'s room with the robot at rest at its start pose. A command sent in
        the old scene is dropped: it was meant for another room."""
        scene = SceneSampler(seed=seed, task_mix=self.p["sim_task_mix"]).sample()
        self.world, self.seed = scene.world, seed
        self.cmd, self.cmd_at = BodyVelocity(), 0.0
        self.get_logger().info(f"scene {seed}: {len(self.world.objects)} objects; its task: "
                               f"{scene.task.instruction!r}")

    def _on_cmd(self, msg: Twist) -> None:
        if self.get_parameter("paused").value:
            return                  # a plan run while paused must not move it on resuming
        values = (msg.linear.x, msg.linear.y, msg.angular.z)
        if not all(math.isfinite(v) and abs(v) <= self.p["cmd_limit"] for v in values):
            self.bad_cmds += 1
            self.get_logger().warning(f"cmd_vel {values} ignored: not finite or beyond "
                                      f"cmd_limit {self.p['cmd_limit']:g} ({self.bad_cmds} so "
                                      "far)", throttle_duration_sec=1.0)
            return
        self.cmd, self.cmd_at = BodyVelocity(*values), time.monotonic()

    def _step(self) -> None:
        now = time.monotonic()
        if self.get_parameter("paused").value:
            self.last = now                     # resumes from rest, not with a long step
            return
        fresh = now - self.cmd_at <= self.p["cmd_timeout_s"]
        pose = self.world.step(self.cmd if fresh else BodyVelocity(), now - self.last)
        self.last = now
        stamp = self.get_clock().now().to_msg()
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id, odom.child_frame_id = stamp, "odom", "base_link"
        odom.pose.pose.position.x, odom.pose.pose.position.y = pose.x, pose.y
        odom.pose.pose.orientation.z = math.sin(pose.yaw / 2)
        odom.pose.pose.orientation.w = math.cos(pose.yaw / 2)
        velocity = self.world.velocity
        odom.twist.twist.linear.x, odom.twist.twist.linear.y = velocity.vx, velocity.vy
        odom.twist.twist.angular.z = velocity.vyaw
        self.odom_pub.publish(odom)
        reading = RangeMsg(radiation_type=RangeMsg.INFRARED, field_of_view=0.05, min_range=0.0,
                        max_range=self.p["range_max_m"],
                        range=self.world.range_ahead(self.p["range_max_m"]))
        reading.header.stamp, reading.header.frame_id = stamp, "range_front"
        self.range_pub.publish(reading)


def main(args=None) -> int:
    return spin(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
