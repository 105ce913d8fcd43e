"""The demo's driver: the `Robot` of sim/episode.py on the live ROS graph, and its recorder.

It stands where an operator would: it switches the sim world's scene, gives instructions and
watches what the robot does; it never talks to the models. It learns each request, with the
exact JPEG the edge decided on, from spec_vlm/request on the robot's side of the bridge.
Everything it sees is also written to an MCAP bag.

Publishes   sim/scene (std_msgs/UInt32, latched), instruction (std_msgs/String)
Subscribes  odom, image/compressed, cmd_vel, spec_vlm/request, spec_vlm/verdict,
            verified_tokens, request_stats, plan_status
"""
from __future__ import annotations

import math
from dataclasses import asdict
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String, UInt32

import spec_vlm_control.msg as ros
from spec_vlm_control import topics
from spec_vlm_control.nodes.common import LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS
from spec_vlm_control.nodes.convert import from_ros, stamp_ns
from spec_vlm_control.recording import Recorder
from spec_vlm_control.sim.episode import Decision
from spec_vlm_control.sim.world import Pose

PLAN_ENDS = {ros.PlanStatus.FINISHED: "finished", ros.PlanStatus.REJECTED: "rejected",
             ros.PlanStatus.PREEMPTED: "preempted"}
STILL_FRAME_S = 0.3         # a frame this long after the plan ended shows the robot at rest


class DemoDriver(Node):
    def __init__(self, context, bag: Path, request_timeout_s: float = 60.0,
                 plan_timeout_s: float = 40.0):
        super().__init__("demo_driver", context=context)
        self.recorder: Optional[Recorder] = Recorder(bag)
        self._record_lock = threading.Lock()
        self.request_timeout_s, self.plan_timeout_s = request_timeout_s, plan_timeout_s
        self.t0 = time.monotonic()
        self.changed = threading.Condition()
        self.odom: Optional[Odometry] = None
        self.frame_stamp_ns = 0
        self.requests: dict[int, ros.DecodeRequest] = {}
        self.chunks: dict[int, list[ros.VerifiedTokens]] = {}
        self.stats: dict[int, ros.RequestStats] = {}
        self.plan_ends: dict[int, str] = {}
        self.passes: dict[int, set] = {}          # request -> blocks the target verified
        self._trajectory: Optional[list] = None   # None until the scene's start pose shows

        self.scene_pub = self.create_publisher(UInt32, topics.SIM_SCENE, LATCHED_QOS)
        self.instruction_pub = self.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
        self._listen(Odometry, topics.ODOM, self._on_odom, 10)
        self._listen(CompressedImage, topics.IMAGE, self._on_image, SENSOR_QOS)
        self._listen(Twist, topics.CMD_VEL, None, 10)
        self._listen(ros.DecodeRequest, topics.REQUEST,
                     lambda m: self.requests.setdefault(m.request_id, m), PROTOCOL_QOS)
        self._listen(ros.Verdict, topics.VERDICT, self._on_verdict, PROTOCOL_QOS)
        self._listen(ros.VerifiedTokens, topics.VERIFIED_TOKENS,
                     lambda m: self.chunks.setdefault(m.request_id, []).append(m), PROTOCOL_QOS)
        self._listen(ros.RequestStats, topics.REQUEST_STATS,
                     lambda m: self.stats.setdefault(m.request_id, m), PROTOCOL_QOS)
        self._listen(ros.PlanStatus, topics.PLAN_STATUS, self._on_plan, PROTOCOL_QOS)

    # -- what the graph shows -----------------------------------------------------------------
    def _listen(self, msg_type, topic: str, handle: Optional[Callable], qos) -> None:
        def callback(msg) -> None:
            self._record(topic, msg)
            if handle is not None:
                with self.changed:
                    handle(msg)
                    self.changed.notify_all()
        self.create_subscription(msg_type, topic, callback, qos)

    def _on_odom(self, msg: Odometry) -> None:
        self.odom = msg
        if self._trajectory is not None:
            pose = pose_of(msg)
            self._trajectory.append((time.monotonic() - self.t0, pose.x, pose.y, pose.yaw))

    def _on_image(self, msg: CompressedImage) -> None:
        self.frame_stamp_ns = stamp_ns(msg.header.stamp)

    def _on_verdict(self, msg) -> None:
        """Each final verdict is one target pass over one block (a resent verdict is the
        same block's): the edge-led modes' passes, seen from the robot."""
        if msg.stage == ros.Verdict.STAGE_FINAL:
            self.passes.setdefault(msg.request_id, set()).add(
                (msg.round, msg.assumed_length, msg.assumed_hash))

    def _on_plan(self, msg) -> None:
        if msg.status in PLAN_ENDS:
            self.plan_ends.setdefault(msg.request_id, PLAN_ENDS[msg.status]
                                      + (f": {msg.detail}" if msg.detail else ""))

    def _record(self, topic: str, msg) -> None:
        name = type(msg).__module__.split(".")[0] + "/msg/" + type(msg).__name__
        with self._record_lock:
            if self.recorder is not None:
                self.recorder.write(topic, name, serialize_message(msg),
                                    self.get_clock().now().nanoseconds)

    def close(self) -> None:
        """Finish the bag; messages still arriving are no longer recorded."""
        with self._record_lock:
            recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close()

    def _publish(self, publisher, topic: str, msg) -> None:
        publisher.publish(msg)
        self._record(topic, msg)

    def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # -- Robot (sim/episode.py) -----------------------------------------------------------------
    def wait_for_graph(self, timeout: float) -> None:
        """Until the edge listens for instructions and the sim and camera publish."""
        if not self._wait(lambda: (self.instruction_pub.get_subscription_count() > 0
                                   and self.odom is not None and self.frame_stamp_ns > 0),
                          timeout):
            raise TimeoutError("the robot's graph did not come up: no edge listening, or no "
                               "odometry or camera frames")

    def reset(self, seed: int, start: Pose) -> None:
        with self.changed:
            self._trajectory = None
        self._publish(self.scene_pub, topics.SIM_SCENE, UInt32(data=seed))
        if not self._wait(lambda: self.odom is not None and same_pose(pose_of(self.odom), start),
                          10.0):
            raise TimeoutError(f"scene {seed}: odometry never showed its start pose")
        with self.changed:
            self._trajectory = []
            shown_ns = stamp_ns(self.odom.header.stamp)
        # The camera renders from the odometry it has received: a frame well after the first
        # new-pose odometry shows the new room from the start pose.
        if not self._wait(lambda: self.frame_stamp_ns > shown_ns + 100_000_000, 10.0):
            raise TimeoutError(f"scene {seed}: no camera frame of the new scene")

    def decide(self, instruction: str) -> Decision:
        started = time.monotonic()
        request_id = None
        for _ in range(3):      # the edge skips an instruction while it has no fresh frame
            with self.changed:
                known = set(self.requests)
            self._publish(self.instruction_pub, topics.INSTRUCTION, String(data=instruction))
            if self._wait(lambda: set(self.requests) - known, 5.0):
                request_id = max(set(self.requests) - known)
                break
        if request_id is None:
            return Decision(0, instruction, plan_status="the edge made no request",
                            started_s=started - self.t0, ended_s=time.monotonic() - self.t0)
        ended = self._wait(lambda: request_id in self.stats, self.request_timeout_s)
        self._wait(lambda: any(c.final for c in self.chunks.get(request_id, ())), 1.0)
        with self.changed:
            chunks = sorted(self.chunks.get(request_id, []), key=lambda c: c.seq)
            request = self.requests[request_id]
            stats = asdict(from_ros(self.stats[request_id])) if request_id in self.stats else {}
            if stats:
                stats["target_passes"] = len(self.passes.get(request_id, ()))
                stats["target_passes_per_token"] = stats["target_passes"] / max(1, stats["tokens"])
        return Decision(
            request_id, instruction, answer="".join(c.text_delta for c in chunks),
            token_ids=[int(t) for c in chunks for t in c.token_ids],
            jpeg=bytes(request.image.data), stats=stats,
            plan_status="" if ended else "no statistics: the request never ended",
            started_s=started - self.t0, ended_s=time.monotonic() - self.t0)

    def execute(self, decision: Decision) -> None:
        rid = decision.request_id
        if self._wait(lambda: rid in self.plan_ends, self.plan_timeout_s):
            decision.plan_status = self.plan_ends[rid]
        else:
            decision.plan_status = f"no end of plan within {self.plan_timeout_s:g} s"
        still_ns = self._now_ns() + int(STILL_FRAME_S * 1e9)
        self._wait(lambda: self.frame_stamp_ns >= still_ns, STILL_FRAME_S + 5.0)
        decision.ended_s = time.monotonic() - self.t0

    def pose(self) -> Pose:
        with self.changed:
            return pose_of(self.odom)

    def trajectory(self) -> list[tuple[float, float, float, float]]:
        with self.changed:
            return list(self._trajectory or [])


def pose_of(msg: Odometry) -> Pose:
    q, p = msg.pose.pose.orientation, msg.pose.pose.position
    return Pose(p.x, p.y, math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z)))


def same_pose(a: Pose, b: Pose) -> bool:
    return (math.hypot(a.x - b.x, a.y - b.y) < 1e-6
            and abs(math.remainder(a.yaw - b.yaw, math.tau)) < 1e-6)
