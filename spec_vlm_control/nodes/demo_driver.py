"""The demo's driver: the `Robot` of sim/episode.py on the live ROS graph, and its recorder.

It stands where an operator would: it switches the sim world's scene, gives instructions and
watches what the robot does; it never talks to the models. It learns each request, with the
exact JPEG the edge decided on, from spec_vlm/request on the robot's side of the bridge.
Everything it sees is also written to an MCAP bag.

Publishes   sim/scene (std_msgs/UInt32, latched), instruction (std_msgs/String),
            image/compressed (only for a paused twin: its decision's own frame again)
Sets        the `paused` parameter of the sim and camera nodes (paused twins)
Subscribes  odom, image/compressed, edge/frame, cmd_vel, spec_vlm/request, spec_vlm/verdict,
            verified_tokens, request_stats, plan_status, baseline/verified_tokens,
            baseline/request_stats
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
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header, String, UInt32

import spec_vlm_control.msg as ros
from spec_vlm_control import topics
from spec_vlm_control.nodes.common import LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS
from spec_vlm_control.nodes.convert import from_ros, stamp_ns, to_time
from spec_vlm_control.recording import Recorder
from spec_vlm_control.sim.episode import Decision
from spec_vlm_control.sim.world import Pose

PLAN_ENDS = {ros.PlanStatus.FINISHED: "finished", ros.PlanStatus.REJECTED: "rejected",
             ros.PlanStatus.PREEMPTED: "preempted"}
STILL_FRAME_S = 0.3         # a frame this long after the plan ended shows the robot at rest
EDGE_FRAME_WAIT_S = 5.0     # for the edge to hold the frame the driver saw
WORLD = ("sim", "camera")   # the nodes a paused twin holds still
IN_FLIGHT_S = 0.5           # for their last messages to arrive


class DemoDriver(Node):
    def __init__(self, context, bag: Path, request_timeout_s: float = 60.0,
                 plan_timeout_s: float = 40.0, live_baseline: bool = False,
                 paused_twins: bool = False):
        """live_baseline: the edge runs one (its parameter): each decision waits for it.
        paused_twins: each executed decision is decided again with the world paused (twin)."""
        super().__init__("demo_driver", context=context)
        self.recorder: Optional[Recorder] = Recorder(bag)
        self._record_lock = threading.Lock()
        self.request_timeout_s, self.plan_timeout_s = request_timeout_s, plan_timeout_s
        self.live_baseline, self.paused_twins = live_baseline, paused_twins
        self.twins: dict[int, dict] = {}          # live request id -> its paused twin
        self.t0 = time.monotonic()
        self.changed = threading.Condition()
        self.odom: Optional[Odometry] = None
        self.frame_stamp_ns = 0
        self.edge_frame_ns = 0      # the stamp of the frame the edge would decide on now
        self.fresh_from_ns = 0      # ... which must be this late: the world as it is now
        self.requests: dict[int, ros.DecodeRequest] = {}
        self.chunks: dict[int, list[ros.VerifiedTokens]] = {}
        self.stats: dict[int, ros.RequestStats] = {}
        self.baseline_chunks: dict[int, list[ros.VerifiedTokens]] = {}
        self.baseline_stats: dict[int, ros.RequestStats] = {}
        self.arrived: dict[tuple[str, int], float] = {}   # when the statistics came
        self.plan_ends: dict[int, str] = {}
        self.passes: dict[int, set] = {}          # request -> blocks the target verified
        self._trajectory: Optional[list] = None   # None until the scene's start pose shows

        self.scene_pub = self.create_publisher(UInt32, topics.SIM_SCENE, LATCHED_QOS)
        self.instruction_pub = self.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
        self.image_pub = self.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
        self._listen(Odometry, topics.ODOM, self._on_odom, 10)
        self._listen(CompressedImage, topics.IMAGE, self._on_image, SENSOR_QOS)
        self._listen(Header, topics.EDGE_FRAME,
                     lambda m: setattr(self, "edge_frame_ns", stamp_ns(m.stamp)), SENSOR_QOS)
        self._listen(Twist, topics.CMD_VEL, None, 10)
        self._listen(ros.DecodeRequest, topics.REQUEST,
                     lambda m: self.requests.setdefault(m.request_id, m), PROTOCOL_QOS)
        self._listen(ros.Verdict, topics.VERDICT, self._on_verdict, PROTOCOL_QOS)
        self._listen(ros.VerifiedTokens, topics.VERIFIED_TOKENS,
                     lambda m: self.chunks.setdefault(m.request_id, []).append(m), PROTOCOL_QOS)
        self._listen(ros.RequestStats, topics.REQUEST_STATS,
                     lambda m: self._on_stats("stats", self.stats, m), PROTOCOL_QOS)
        self._listen(ros.VerifiedTokens, topics.BASELINE_TOKENS,
                     lambda m: self.baseline_chunks.setdefault(m.request_id, []).append(m),
                     PROTOCOL_QOS)
        self._listen(ros.RequestStats, topics.BASELINE_STATS,
                     lambda m: self._on_stats("baseline", self.baseline_stats, m), PROTOCOL_QOS)
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

    def _on_stats(self, kind: str, into: dict, msg) -> None:
        into.setdefault(msg.request_id, msg)
        self.arrived.setdefault((kind, msg.request_id), time.monotonic())

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
        self.fresh_from_ns = shown_ns + 100_000_000
        if not self._wait(lambda: self.frame_stamp_ns >= self.fresh_from_ns, 10.0):
            raise TimeoutError(f"scene {seed}: no camera frame of the new scene")

    def decide(self, instruction: str) -> Decision:
        """Instruct once the edge holds a frame as fresh as the one this driver waited for:
        its own subscription may hear a frame before the edge's does (the edge once decided
        on the last task's frame). The wait is part of the decision's time, and reported."""
        started = time.monotonic()
        if not self._wait(lambda: self.edge_frame_ns >= self.fresh_from_ns, EDGE_FRAME_WAIT_S):
            return Decision(0, instruction, plan_status="the edge held no frame of the world "
                            f"as it is within {EDGE_FRAME_WAIT_S:g} s",
                            started_s=started - self.t0, ended_s=time.monotonic() - self.t0,
                            frame_wait_s=time.monotonic() - started)
        frame_wait_s = time.monotonic() - started
        # The decision's request is the one answering on verified_tokens or request_stats
        # (a refused one only there): the live baseline's request is not.
        with self.changed:
            known = set(self.chunks) | set(self.stats)
        self._publish(self.instruction_pub, topics.INSTRUCTION, String(data=instruction))

        def new() -> set:
            return (set(self.chunks) | set(self.stats)) - known
        if not self._wait(new, self.request_timeout_s):
            return Decision(0, instruction, plan_status="the edge made no request",
                            started_s=started - self.t0, ended_s=time.monotonic() - self.t0,
                            frame_wait_s=frame_wait_s)
        with self.changed:
            request_id = max(new())
        ended = self._wait(lambda: request_id in self.stats, self.request_timeout_s)
        self._wait(lambda: any(c.final for c in self.chunks.get(request_id, ())), 1.0)
        started_request = request_id in self.requests   # not refused: a baseline runs too
        baseline = self._baseline(request_id) if self.live_baseline and started_request else {}
        with self.changed:
            chunks = sorted(self.chunks.get(request_id, []), key=lambda c: c.seq)
            request = self.requests.get(request_id)
            stats = asdict(from_ros(self.stats[request_id])) if request_id in self.stats else {}
            if stats:
                stats["target_passes"] = len(self.passes.get(request_id, ()))
                stats["target_passes_per_token"] = stats["target_passes"] / max(1, stats["tokens"])
        token_ids = [int(t) for c in chunks for t in c.token_ids]
        if "token_ids" in baseline:
            baseline["same_as_live"] = baseline["token_ids"] == token_ids
        return Decision(
            request_id, instruction, answer="".join(c.text_delta for c in chunks),
            token_ids=token_ids, jpeg=bytes(request.image.data) if request else b"",
            stats=stats, plan_status="" if ended else "no statistics: the request never ended",
            started_s=started - self.t0, ended_s=time.monotonic() - self.t0,
            frame_wait_s=frame_wait_s, baseline=baseline)

    def _baseline(self, request_id: int) -> dict:
        """The live baseline of the decision (its RequestStats, field by field, and tokens),
        whether it ran first, and the time it added to the task: its own when it ran first
        (the decision's request waited for it), else how long it outlasted the decision's
        (an upper bound: the plan runs meanwhile)."""
        if not self._wait(lambda: request_id in self.baseline_stats and request_id in self.stats,
                          self.request_timeout_s):
            return {"ok": False, "error": "no statistics of the decision and its live baseline"}
        self._wait(lambda: any(c.final for c in self.baseline_chunks.get(request_id, ())), 1.0)
        with self.changed:
            stats = asdict(from_ros(self.baseline_stats[request_id]))
            chunks = sorted(self.baseline_chunks.get(request_id, []), key=lambda c: c.seq)
            arrived = self.arrived[("baseline", request_id)]
            own = self.arrived[("stats", request_id)]
        stats["token_ids"] = [int(t) for c in chunks for t in c.token_ids]
        stats["ran_first"] = arrived < own
        stats["added_task_s"] = stats["total_s"] if arrived < own else arrived - own
        return stats

    def execute(self, decision: Decision) -> None:
        rid = decision.request_id
        if self._wait(lambda: rid in self.plan_ends, self.plan_timeout_s):
            decision.plan_status = self.plan_ends[rid]
        else:
            decision.plan_status = f"no end of plan within {self.plan_timeout_s:g} s"
        self.fresh_from_ns = self._now_ns() + int(STILL_FRAME_S * 1e9)
        self._wait(lambda: self.frame_stamp_ns >= self.fresh_from_ns, STILL_FRAME_S + 5.0)
        decision.ended_s = time.monotonic() - self.t0
        if self.paused_twins and decision.jpeg:
            self.twins[rid] = self.twin(decision)

    # -- paused twins ----------------------------------------------------------------------
    def twin(self, decision: Decision) -> dict:
        """The decision again right after its plan ran, with the sim and the camera paused:
        next to it in time, so that a change in the machine's load hits both alike. The
        paused sim takes no commands, so the twin's plan moves nothing."""
        began = time.monotonic()
        self.pause_world(True)
        try:
            again = self.decide_again(decision)
        finally:
            self.pause_world(False)
            self.fresh_from_ns = self._now_ns()     # the next decision sees the world again
        return dict(again.stats, ok=bool(again.stats.get("ok")), request_id=again.request_id,
                    same_frame=again.jpeg == decision.jpeg,
                    same_as_live=again.token_ids == decision.token_ids,
                    twin_s=time.monotonic() - began)

    def pause_world(self, paused: bool, timeout: float = 10.0) -> None:
        """Hold the sim and the camera still (or let them go on): their `paused` parameter."""
        for name in WORLD:
            client = AsyncParameterClient(self, name)
            if not client.wait_for_services(timeout):
                raise TimeoutError(f"the {name} node's parameter services did not answer")
            done = threading.Event()
            future = client.set_parameters([Parameter("paused", value=paused)])
            future.add_done_callback(lambda _: done.set())
            if not done.wait(timeout) or not all(r.successful for r in future.result().results):
                raise RuntimeError(f"could not set paused={paused} on the {name} node")
        if paused:
            time.sleep(IN_FLIGHT_S)     # a frame rendered before the pause is still on its way

    def decide_again(self, decision: Decision) -> Decision:
        """The decision once more, on its own frame and instruction, with the world paused
        (pause_world): the frame is published again stamped now, and the plan is left to end
        (the robot stands still while it decides, as in the live pass)."""
        frame = CompressedImage(format="jpeg", data=decision.jpeg)
        self.fresh_from_ns = self._now_ns()
        frame.header.stamp = to_time(self.fresh_from_ns)
        self._publish(self.image_pub, topics.IMAGE, frame)
        again = self.decide(decision.instruction)
        if again.request_id:
            self._wait(lambda: again.request_id in self.plan_ends, self.plan_timeout_s)
        return again

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
