"""`edge` node (robot): the draft VLM and the edge side of speculative decoding.

Takes the latest camera frame and the current instruction, decides when to ask for a new
action, runs one EdgeSession per request (core/edge.py) on a thread of its own, and streams
only *verified* tokens to the controller as they become final.

Subscribes  image/compressed (sensor QoS), instruction (std_msgs/String), plan_status,
            spec_vlm/verdict, spec_vlm/committed, spec_vlm/error (protocol QoS)
Publishes   spec_vlm/request, spec_vlm/draft, spec_vlm/cancel, verified_tokens,
            request_stats, link_failed (std_msgs/Bool, latched), /diagnostics
"""
from __future__ import annotations

import threading
from typing import Optional

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool, Header, String

import spec_vlm_control.msg as ros
from spec_vlm_control import topics
from spec_vlm_control.camera.frame import frame_is_fresh
from spec_vlm_control.core.edge import EdgeConfig, EdgeSession
from spec_vlm_control.core.clock import RealClock
from spec_vlm_control.core.models.loading import load_model
from spec_vlm_control.core.prompts import request_prompt
from spec_vlm_control.core.protocol import (MODES, DecodeRequest, DecodingParams, Handshake,
                                            PlanStatus)
from spec_vlm_control.core.realtime import ActorThread
from spec_vlm_control.core.verified_stream import VerifiedStream
from spec_vlm_control.nodes.common import (LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS,
                                           declare_parameters, spin)
from spec_vlm_control.nodes.convert import from_ros, to_ros

PARAMETERS = {
    "robot_id": ("go2", "identifies this robot's sessions at the cloud"),
    "model": ("", "draft model: a local folder, a repo id in the local HF cache, or a .gguf"),
    "dtype": ("fp32", "fp32, fp16 or bf16"),
    "device": ("cpu", "cpu or cuda"),
    "threads": (0, "torch CPU threads (0 = torch's default)"),
    "system_prompt": ("", "system message of every prompt; must equal the cloud's"),
    "use_image": (True, "send the camera frame with each request (false: text-only models)"),
    "mode": ("pipelined", "plain, early_exit, preemptive, pipelined or cloud_led "
                          "(see README: cost-first vs latency-first)"),
    "block_size": (4, "k: draft tokens per block"),
    "max_new_tokens": (32, "longest action, in tokens"),
    "temperature": (0.0, "0 = greedy; > 0 = speculative sampling at this temperature"),
    "top_p": (1.0, "nucleus sampling threshold (sampling only)"),
    "seed": (0, "seed of the sampling random stream"),
    "trigger": ("instruction", "when to ask for a new action: 'instruction' (on each new "
                               "instruction), 'plan_finished' (also each time the controller "
                               "finishes a plan), 'periodic' (also every period_s)"),
    "period_s": (2.0, "re-decision period of trigger 'periodic'"),
    "max_frame_age_s": (0.5, "a frame older than this is never used for a decision"),
    "resend_after_s": (1.0, "resend outstanding messages after this long without progress"),
    "deadline_s": (10.0, "give up a request (and report a link failure) when no token has "
                         "been verified for this long"),
    "pipeline_depth": (3, "pipelined mode: draft blocks in flight at most"),
    "target_model_hash": ("", "refuse a cloud whose target has another hash (empty = any)"),
    "record": ("", "folder of an MCAP bag that records every request (empty = off)"),
}

OUTGOING = {"DecodeRequest": topics.REQUEST, "DraftBlock": topics.DRAFT, "Cancel": topics.CANCEL}


class EdgeNode(Node):
    def __init__(self):
        super().__init__("edge")
        self.p = p = declare_parameters(self, PARAMETERS)
        if p["mode"] not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, not {p['mode']!r}")
        if p["trigger"] not in ("instruction", "plan_finished", "periodic"):
            raise ValueError(f"unknown trigger {p['trigger']!r}")
        if not p["model"]:
            raise ValueError("parameter 'model' is required (the draft model)")
        if p["threads"] > 0:
            torch.set_num_threads(p["threads"])
        self.model = load_model(p["model"], p["dtype"], p["device"])
        self.config = EdgeConfig(resend_after_s=p["resend_after_s"], deadline_s=p["deadline_s"],
                                 pipeline_depth=p["pipeline_depth"])
        self.recorder = None
        if p["record"]:
            from spec_vlm_control.recording import Recorder
            self.recorder = Recorder(p["record"])
        self._record_lock = threading.Lock()

        self.publishers_by_type = {name: self.create_publisher(getattr(ros, name), topic,
                                                               PROTOCOL_QOS)
                                   for name, topic in OUTGOING.items()}
        self.verified_pub = self.create_publisher(ros.VerifiedTokens, topics.VERIFIED_TOKENS,
                                                  PROTOCOL_QOS)
        self.stats_pub = self.create_publisher(ros.RequestStats, topics.REQUEST_STATS,
                                               PROTOCOL_QOS)
        self.link_pub = self.create_publisher(Bool, topics.LINK_FAILED, LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)

        self.create_subscription(CompressedImage, topics.IMAGE, self._on_image, SENSOR_QOS)
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, PROTOCOL_QOS)
        self.create_subscription(ros.PlanStatus, topics.PLAN_STATUS, self._on_plan, PROTOCOL_QOS)
        for topic, type_name in topics.DOWNLINK.items():
            self.create_subscription(getattr(ros, type_name), topic,
                                     lambda msg, t=topic: self._on_cloud(t, msg), PROTOCOL_QOS)
        if self.recorder is not None:
            from geometry_msgs.msg import Twist
            self.create_subscription(Twist, topics.CMD_VEL,
                                     lambda m: self._record(topics.CMD_VEL, m), 10)

        self.frame: Optional[CompressedImage] = None
        self.instruction = ""
        self.next_request_id = 1
        self.session: Optional[EdgeSession] = None
        self.runner: Optional[ActorThread] = None
        self.reported = True
        self.last_stats: Optional[ros.RequestStats] = None
        self.link_failed: Optional[bool] = None
        self._set_link_failed(False)
        self.create_timer(0.05, self._check_done)
        self.create_timer(1.0, self._publish_diagnostics)
        if p["trigger"] == "periodic":
            self.create_timer(p["period_s"], lambda: self._decide("period"))
        self.get_logger().info(f"ready: draft {self.model.path} ({self.model.adapter.num_layers} "
                               f"layers), mode {p['mode']}, k={p['block_size']}")

    # -- inputs -----------------------------------------------------------------------------
    def _on_image(self, msg: CompressedImage) -> None:
        self.frame = msg

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data.strip()
        self._record(topics.INSTRUCTION, msg)
        self._decide("instruction")

    def _on_plan(self, msg) -> None:
        if self.p["trigger"] in ("plan_finished", "periodic") and msg.status == PlanStatus.FINISHED \
                and self.session is not None and msg.request_id == self.session.request.request_id:
            self._decide("plan finished")

    def _on_cloud(self, topic: str, msg) -> None:
        self._record(topic, msg)
        if self.runner is not None:
            self.runner.deliver(from_ros(msg))

    # -- one request --------------------------------------------------------------------------
    def _decide(self, reason: str) -> None:
        if not self.instruction:
            return
        frame = self.frame
        if self.p["use_image"]:
            now_ns = self.get_clock().now().nanoseconds
            stamp_ns = frame.header.stamp.sec * 10**9 + frame.header.stamp.nanosec if frame else 0
            if frame is None or not frame_is_fresh(stamp_ns, now_ns, self.p["max_frame_age_s"]):
                self.get_logger().warning(f"no decision ({reason}): no camera frame younger "
                                          f"than {self.p['max_frame_age_s']} s")
                return
        self._stop_session("preempted by a new decision")
        request_id = self.next_request_id
        self.next_request_id += 1
        p = self.p
        params = DecodingParams(MODES[p["mode"]], p["block_size"], p["max_new_tokens"],
                                p["temperature"], p["top_p"], p["seed"])
        request = DecodeRequest(
            p["robot_id"], request_id, self.instruction,
            bytes(frame.data) if p["use_image"] else b"", frame.format if p["use_image"] else "",
            params, Handshake(tokenizer_hash=self.model.fingerprint,
                              target_model_hash=p["target_model_hash"]),
            stamp=(frame.header.stamp.sec + frame.header.stamp.nanosec * 1e-9) if frame else 0.0)
        prompt = request_prompt(self.model.prompts, request, p["system_prompt"] or None)
        if frame is not None and p["use_image"]:
            self._record(topics.IMAGE, frame)
        self.reported = False
        stream = VerifiedStream(request_id, self._publish_verified,
                                lambda ids: self.model.tokenizer.decode(ids, skip_special_tokens=True),
                                request.stamp)
        self.session = EdgeSession(self.model.adapter, prompt, request, RealClock(),
                                   send=self._send, config=self.config, on_tokens=stream)
        self.runner = ActorThread(self.session, "edge session", on_error=self._on_runner_error)
        self.get_logger().info(f"request {request_id} ({reason}): {self.instruction!r}")
        self.runner.call(self.session.start)
        self.runner.start()

    def _send(self, message) -> None:
        msg = to_ros(message)
        self.publishers_by_type[type(message).__name__].publish(msg)
        self._record(OUTGOING[type(message).__name__], msg)

    def _publish_verified(self, chunk) -> None:
        """On the session's thread: tokens the target has decided, toward the controller."""
        msg = to_ros(chunk)
        self.verified_pub.publish(msg)
        self._record(topics.VERIFIED_TOKENS, msg)

    def _on_runner_error(self, exc: BaseException) -> None:
        """On the (now ending) worker thread: a draft-model or protocol bug ends the request
        as failed, so the controller stops instead of waiting."""
        self.get_logger().error(f"edge session failed: {exc!r}")
        if self.session is not None and not self.session.done:
            self.session.abort(f"internal error: {exc!r}")

    def _stop_session(self, reason: str) -> None:
        session, runner = self.session, self.runner
        self.runner = None
        if runner is not None:
            runner.stop()
        if session is not None and not session.done:
            session.cancel(reason)              # its worker has stopped: safe on this thread
        self._check_done()

    def _check_done(self) -> None:
        session = self.session
        if session is None or not session.done or self.reported:
            return
        self.reported = True
        stats = to_ros(session.stats())
        self.stats_pub.publish(stats)
        self._record(topics.REQUEST_STATS, stats)
        self.last_stats = stats
        if session.error:
            self.get_logger().error(f"request {session.request.request_id} failed: "
                                    f"{session.error}")
        else:
            self.get_logger().info(f"request {session.request.request_id}: {stats.tokens} tokens "
                                   f"in {stats.total_s:.3f} s, {stats.rounds} rounds, "
                                   f"{stats.mean_accepted_per_round:.2f} accepted/round")
        self._set_link_failed(bool(session.error) and not session.cancelled)
        self._publish_diagnostics()

    # -- health ---------------------------------------------------------------------------------
    def _set_link_failed(self, failed: bool) -> None:
        if failed != self.link_failed:
            self.link_failed = failed
            self.link_pub.publish(Bool(data=failed))

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="spec_vlm_control: edge", hardware_id=self.p["robot_id"])
        s = self.last_stats
        if self.link_failed:
            status.level, status.message = DiagnosticStatus.ERROR, f"decode link failed: {s.error}"
        elif s is None:
            status.level, status.message = DiagnosticStatus.OK, "no request yet"
        else:
            status.level, status.message = DiagnosticStatus.OK, "decoding"
        if s is not None:
            status.values = [KeyValue(key=k, value=str(v)) for k, v in (
                ("request_id", s.request_id), ("ok", s.ok), ("error", s.error),
                ("tokens", s.tokens), ("mean_accepted_per_round", f"{s.mean_accepted_per_round:.2f}"),
                ("early_hit_rate", f"{s.early_hit_rate:.2f}"),
                ("time_to_first_token_s", f"{s.time_to_first_token_s:.3f}"),
                ("total_s", f"{s.total_s:.3f}"))]
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    def _record(self, topic: str, msg) -> None:
        if self.recorder is None:
            return
        with self._record_lock:
            self.recorder.write(topic, type(msg).__module__.split(".")[0] + "/msg/"
                                + type(msg).__name__, serialize_message(msg),
                                self.get_clock().now().nanoseconds)

    def close(self) -> None:
        self._stop_session("edge shutting down")
        if self.recorder is not None:
            with self._record_lock:
                self.recorder.close()


def main(args=None) -> int:
    return spin(EdgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
