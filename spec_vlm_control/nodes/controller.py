"""`controller` node: verified action tokens to safe Go2 locomotion.

A thin adapter over spec_vlm_control.control.controller.Controller: parameters, topics, QoS and
timers live here; every decision lives in the core.

Subscribes  verified_tokens (VerifiedTokens, reliable), estop (std_msgs/Bool, reliable +
            transient-local), link_failed (std_msgs/Bool, reliable + transient-local: true
            while the edge's decode link is down), range (sensor_msgs/Range, sensor QoS)
Publishes   cmd_vel (geometry_msgs/Twist, backend `twist`), plan_status (PlanStatus),
            /diagnostics (diagnostic_msgs/DiagnosticArray)
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import Range as RangeReading
from std_msgs.msg import Bool

from spec_vlm_control import topics
from spec_vlm_control.action import ActionLimits
from spec_vlm_control.control.backends import Backend, TwistBackend
from spec_vlm_control.control.controller import Controller, ControllerConfig, Incident, Level
from spec_vlm_control.control.motion import MotionLimits
from spec_vlm_control.msg import PlanStatus, VerifiedTokens
from spec_vlm_control.nodes.common import (LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS, ConfigError,
                                           OneOf, Range, declare_parameters, spin)
from spec_vlm_control.nodes.convert import from_ros, to_ros

# name -> (default, description, allowed values); config/controller.yaml lists the same keys.
PARAMETERS = {
    "backend": ("twist", "where commands go: 'twist' (geometry_msgs/Twist on cmd_vel) or "
                         "'unitree' (unitree_sdk2py SportClient)", OneOf(("twist", "unitree"))),
    "control_rate_hz": (20.0, "control loop rate; cmd_vel / Move are sent at this rate",
                        Range(0.0, 1000.0, low_open=True)),
    "watchdog_timeout_s": (0.2, "stop when no fresh motion command was sent for this long "
                                "(more than 4/3 of the control period)",
                           Range(0.0, 10.0, low_open=True)),
    "max_frame_age_at_start_s": (1.0, "a plan whose camera frame is older than this when its "
                                      "first step is ready is not executed",
                                 Range(0.0, 60.0, low_open=True)),
    "max_clock_skew_s": (0.05, "a plan whose camera frame is stamped further than this in the "
                               "future (camera, edge and controller share the robot's clock) "
                               "is not executed", Range(0.0, 10.0)),
    "max_plan_chars": (256, "a plan with more text than this is not executed (32 tokens "
                            "decode to about 12 steps of at most 20 characters)",
                       Range(1, 65536)),
    "recent_plans": (256, "how many ended plans are remembered so that a repeated message "
                          "never runs one again", Range(1, 65536)),
    "max_distance_m": (3.0, "largest distance of one forward/back/left/right step",
                       Range(0.0, 100.0, low_open=True)),
    "max_turn_deg": (180.0, "largest angle of one turn_left/turn_right step",
                     Range(0.0, 360.0, low_open=True)),
    "clamp_out_of_range": (False, "clamp out-of-range values to the limit instead of "
                                  "rejecting the plan"),
    "linear_speed_mps": (0.4, "cruise speed of forward/back steps",
                         Range(0.0, 5.0, low_open=True)),
    "lateral_speed_mps": (0.3, "cruise speed of left/right steps", Range(0.0, 5.0, low_open=True)),
    "yaw_rate_dps": (60.0, "cruise yaw rate of turn steps", Range(0.0, 720.0, low_open=True)),
    "linear_accel_mps2": (1.0, "acceleration limit (x and y); stopping is never limited",
                          Range(0.0, 20.0, low_open=True)),
    "yaw_accel_dps2": (180.0, "yaw acceleration limit; stopping is never limited",
                       Range(0.0, 3600.0, low_open=True)),
    "max_step_s": (10.0, "longest time one step may run", Range(0.0, 600.0, low_open=True)),
    "posture_s": (2.0, "how long stand/sit hold still for the posture change",
                  Range(0.0, 60.0)),
    "obstacle_stop_m": (0.4, "forward motion stops when the range ahead is shorter (0: never)",
                        Range(0.0, 10.0)),
    "obstacle_max_age_s": (0.5, "range readings older than this are ignored",
                           Range(0.0, 60.0, low_open=True)),
    "diagnostics_period_s": (1.0, "period of the diagnostics summary",
                             Range(0.01, 3600.0)),
    "unitree_interface": ("eth0", "network interface of the robot (backend 'unitree')"),
    "unitree_domain_id": (0, "DDS domain of the robot (backend 'unitree')", Range(0, 232)),
    "unitree_timeout_s": (1.0, "SportClient reply timeout (backend 'unitree')",
                          Range(0.0, 60.0, low_open=True)),
}

DIAGNOSTIC_LEVELS = {Level.OK: DiagnosticStatus.OK, Level.WARN: DiagnosticStatus.WARN,
                     Level.ERROR: DiagnosticStatus.ERROR}


class ControllerNode(Node):
    def __init__(self):
        super().__init__("controller")
        p = declare_parameters(self, PARAMETERS)
        period_s = 1.0 / p["control_rate_hz"]
        if 0.75 * p["watchdog_timeout_s"] <= period_s:
            # A command is valid for 3/4 of the timeout: a shorter one lapses between periods
            # and the robot alternates stop and go.
            raise ConfigError(f"parameter 'watchdog_timeout_s' = {p['watchdog_timeout_s']!r}: "
                              f"must be > {period_s / 0.75:g} (4/3 of the control period at "
                              f"control_rate_hz {p['control_rate_hz']:g})")
        config = ControllerConfig(
            action=ActionLimits(max_distance_m=p["max_distance_m"],
                                max_turn_deg=p["max_turn_deg"],
                                clamp=p["clamp_out_of_range"]),
            motion=MotionLimits(linear_speed=p["linear_speed_mps"],
                                lateral_speed=p["lateral_speed_mps"],
                                yaw_rate=math.radians(p["yaw_rate_dps"]),
                                linear_accel=p["linear_accel_mps2"],
                                yaw_accel=math.radians(p["yaw_accel_dps2"]),
                                max_step_s=p["max_step_s"], posture_s=p["posture_s"]),
            rate_hz=p["control_rate_hz"], watchdog_timeout_s=p["watchdog_timeout_s"],
            max_frame_age_at_start_s=p["max_frame_age_at_start_s"],
            max_clock_skew_s=p["max_clock_skew_s"],
            max_plan_chars=p["max_plan_chars"], recent_plans=p["recent_plans"],
            obstacle_stop_m=p["obstacle_stop_m"],
            obstacle_max_age_s=p["obstacle_max_age_s"])
        self.cmd_vel = self.create_publisher(Twist, topics.CMD_VEL, 10)
        self.status_pub = self.create_publisher(PlanStatus, topics.PLAN_STATUS, PROTOCOL_QOS)
        self.diagnostics = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.core = Controller(config, self._backend(p))
        self.core.watchdog.start()
        # All callbacks share the node's default, mutually exclusive group: the core is
        # never entered concurrently (only the watchdog thread runs beside it).
        # Created first, so that when a safety input and a chunk wait together the safety
        # input is taken first (the executor serves ready subscriptions in creation order):
        # the edge clears link_failed just before the first chunk of a recovered answer.
        self.create_subscription(Bool, topics.ESTOP, self.on_estop, LATCHED_QOS)
        self.create_subscription(Bool, topics.LINK_FAILED, self.on_link, LATCHED_QOS)
        self.create_subscription(VerifiedTokens, topics.VERIFIED_TOKENS, self.on_tokens,
                                 PROTOCOL_QOS)
        self.create_subscription(RangeReading, topics.RANGE, self.on_range, SENSOR_QOS)
        self.create_timer(1.0 / config.rate_hz, self.on_tick)
        self.create_timer(p["diagnostics_period_s"], self.publish_health)
        self.get_logger().info(f"controller ready: backend {self.core.backend.name}, "
                               f"{config.rate_hz:g} Hz")

    def _backend(self, p: dict) -> Backend:
        if p["backend"] == "unitree":
            from spec_vlm_control.control.unitree import UnitreeBackend
            return UnitreeBackend.connect(p["unitree_interface"], p["unitree_domain_id"],
                                          p["unitree_timeout_s"])
        return TwistBackend(self._publish_twist)

    def _publish_twist(self, vx: float, vy: float, vyaw: float) -> None:
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = vx, vy, vyaw
        self.cmd_vel.publish(msg)

    # -- inputs: convert, hand to the core, publish what it reports -----------------------

    def on_tokens(self, msg: VerifiedTokens) -> None:
        if self.core.on_chunk(from_ros(msg), self.get_clock().now().nanoseconds,
                              time.monotonic()):
            self.on_tick()
        else:
            self.flush()

    def on_estop(self, msg: Bool) -> None:
        self.core.on_estop(msg.data, time.monotonic())
        self.flush()

    def on_link(self, msg: Bool) -> None:
        self.core.on_link(msg.data, time.monotonic())
        self.flush()

    def on_range(self, msg: RangeReading) -> None:
        self.core.on_range(msg.range, time.monotonic())
        self.flush()

    def on_tick(self) -> None:
        self.core.tick(time.monotonic())
        self.flush()

    # -- outputs ----------------------------------------------------------------------------

    def flush(self) -> None:
        for event in self.core.events:
            self.status_pub.publish(to_ros(event))
        self.core.events.clear()
        for incident in self.core.incidents:
            self.report(incident)
        self.core.incidents.clear()

    def report(self, incident: Incident) -> None:
        """An incident as a log line and, at once, a diagnostics entry."""
        # One call site per severity: rclpy refuses a call site whose severity changes.
        if incident.level is Level.ERROR:
            self.get_logger().error(incident.message)
        elif incident.level is Level.WARN:
            self.get_logger().warning(incident.message)
        else:
            self.get_logger().info(incident.message)
        self._publish_diagnostics([DiagnosticStatus(
            level=DIAGNOSTIC_LEVELS[incident.level], name=f"{self.get_name()}: event",
            message=incident.message, hardware_id=self.core.backend.name)])

    def publish_health(self) -> None:
        self._publish_diagnostics([DiagnosticStatus(
            level=DIAGNOSTIC_LEVELS[h.level], name=f"{self.get_name()}: {h.name}",
            message=h.message, hardware_id=self.core.backend.name,
            values=[KeyValue(key=k, value=v) for k, v in h.values.items()])
            for h in self.core.health(time.monotonic())])

    def _publish_diagnostics(self, statuses: list[DiagnosticStatus]) -> None:
        msg = DiagnosticArray(status=statuses)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics.publish(msg)

    def close(self) -> None:
        """Stop the robot before the node goes away."""
        self.core.close()


def main(args=None) -> int:
    return spin(ControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
