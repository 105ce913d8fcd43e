"""`edge` node (robot): the draft VLM and the edge side of speculative decoding.

A thin adapter over spec_vlm_control.edge_agent.EdgeAgent, which decides when to ask for a
new action, which camera frame a decision may use and when link_failed ends the
controller's plan. Parameters, topics, QoS and timers live here, and one EdgeSession per
request (core/edge.py) runs on a thread of its own, streaming only *verified* tokens to the
controller as they become final. A decision that is not started is logged, shown in
/diagnostics and reported as a RequestStats with ok false.

Subscribes  image/compressed (sensor QoS), instruction (std_msgs/String), plan_status,
            spec_vlm/verdict, spec_vlm/committed, spec_vlm/error (protocol QoS)
Publishes   spec_vlm/request, spec_vlm/draft, spec_vlm/cancel, verified_tokens,
            request_stats, link_failed (std_msgs/Bool, latched), /diagnostics,
            edge/frame (std_msgs/Header of each frame kept for the next decision, sensor QoS)
            and, with live_baseline, baseline/verified_tokens and baseline/request_stats
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Optional

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool, Header, String

import spec_vlm_control.msg as ros
from spec_vlm_control import hops, topics
from spec_vlm_control.core.edge import EdgeConfig, EdgeSession
from spec_vlm_control.core.clock import RealClock
from spec_vlm_control.core.metrics import RequestStats
from spec_vlm_control.core.models.loading import DTYPES, load_model
from spec_vlm_control.core.prompts import request_prompt
from spec_vlm_control.core.protocol import MODES, DecodeRequest, DecodingParams, Handshake
from spec_vlm_control.core.realtime import ActorThread
from spec_vlm_control.core.verified_stream import VerifiedStream
from spec_vlm_control.edge_agent import TRIGGERS, AgentConfig, Decision, EdgeAgent, Refusal
from spec_vlm_control.live_baseline import InTurn, baseline_first, baseline_setup
from spec_vlm_control.nodes.common import (LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS, ConfigError,
                                           OneOf, Range, declare_parameters, spin)
from spec_vlm_control.nodes.convert import from_ros, stamp_ns, to_ros

POSITIVE = Range(0.0, low_open=True)

PARAMETERS = {
    "robot_id": ("go2", "identifies this robot's sessions at the cloud"),
    "model": ("", "draft model: a local folder, a repo id in the local HF cache, or a .gguf"),
    "dtype": ("fp32", "number format of the weights", OneOf(tuple(DTYPES))),
    "device": ("cpu", "cpu or cuda"),
    "threads": (0, "torch CPU threads (0 = torch's default)", Range(0, 1024)),
    "system_prompt": ("", "system message of every prompt; must equal the cloud's"),
    "use_image": (True, "send the camera frame with each request (false: text-only models; "
                        "frames are ignored and a request carries the time it was asked for)"),
    "mode": ("preemptive", "plain, early_exit, preemptive, pipelined or cloud_led "
                          "(see README: cost-first vs latency-first)", OneOf(tuple(MODES))),
    "block_size": (4, "k: draft tokens per block", Range(1, 64)),
    "max_new_tokens": (32, "longest action, in tokens", Range(1, 4096)),
    "temperature": (0.0, "0 = greedy; > 0 = speculative sampling at this temperature",
                    Range(0.0, 100.0)),
    "top_p": (1.0, "nucleus sampling threshold (sampling only)", Range(0.0, 1.0, low_open=True)),
    "seed": (0, "seed of the sampling random stream", Range(0)),
    "trigger": ("instruction", "when to ask for a new action: 'instruction' (on each new "
                               "instruction), 'plan_finished' (also once when the controller "
                               "finishes the current request's plan), 'periodic' (also "
                               "every period_s while no request is in flight)",
                OneOf(TRIGGERS)),
    "period_s": (2.0, "re-decision period of trigger 'periodic'", POSITIVE),
    "max_frame_age_at_decision_s": (0.5, "a frame older than this when a decision is asked for "
                                         "is never used for it", POSITIVE),
    "max_clock_skew_s": (0.05, "a frame stamped further than this ahead of the edge's clock "
                               "(camera and edge share a host) is dropped", Range(0.0, 1.0)),
    "max_image_bytes": (4_000_000, "a frame larger than this is dropped on arrival",
                        Range(1)),
    "max_image_pixels": (4_000_000, "a frame whose header claims more pixels than this is "
                                    "dropped on arrival, before it is decoded", Range(1)),
    "resend_after_s": (1.0, "resend outstanding messages after this long without progress",
                       POSITIVE),
    "deadline_s": (10.0, "give up a request (and report a link failure) when no token has "
                         "been verified for this long", POSITIVE),
    "pipeline_depth": (3, "pipelined mode: draft blocks in flight at most", Range(1, 64)),
    "target_model_hash": ("", "refuse a cloud whose target has another hash (empty = any)"),
    "record": ("", "folder of an MCAP bag that records every request (empty = off)"),
    "live_baseline": (False, "also decode every decision by cloud-only streaming (cloud_led "
                             "without drafts) on the same frame and instruction, one request "
                             "after the other in ABBA order; its answer goes to baseline/ "
                             "topics, never to the controller. For measuring: it adds its "
                             "time to every other decision's start"),
}

OUTGOING = {"DecodeRequest": topics.REQUEST, "DraftBlock": topics.DRAFT, "Cancel": topics.CANCEL}


class EdgeNode(Node):
    def __init__(self):
        super().__init__("edge")
        self.p = p = declare_parameters(self, PARAMETERS)
        if not p["model"]:
            raise ConfigError("parameter 'model' is required (the draft model)")
        try:
            torch.device(p["device"])
        except RuntimeError as error:
            raise ConfigError(f"parameter 'device' = {p['device']!r}: {error}") from None
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
        self.hops = hops.open_log("edge")           # off unless SPEC_VLM_HOPS is set

        self.publishers_by_type = {name: self.create_publisher(getattr(ros, name), topic,
                                                               PROTOCOL_QOS)
                                   for name, topic in OUTGOING.items()}
        self.verified_pub = self.create_publisher(ros.VerifiedTokens, topics.VERIFIED_TOKENS,
                                                  PROTOCOL_QOS)
        self.stats_pub = self.create_publisher(ros.RequestStats, topics.REQUEST_STATS,
                                               PROTOCOL_QOS)
        self.link_pub = self.create_publisher(Bool, topics.LINK_FAILED, LATCHED_QOS)
        self.frame_pub = self.create_publisher(Header, topics.EDGE_FRAME, SENSOR_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)

        self.session: Optional[EdgeSession] = None
        self.baseline: Optional[EdgeSession] = None     # the live baseline beside `session`
        self.baseline_pubs = (
            self.create_publisher(ros.VerifiedTokens, topics.BASELINE_TOKENS, PROTOCOL_QOS),
            self.create_publisher(ros.RequestStats, topics.BASELINE_STATS, PROTOCOL_QOS))
        self.decisions = 0                              # started: the ABBA order's count
        self.stream: Optional[VerifiedStream] = None
        self.runner: Optional[ActorThread] = None
        self.agent = EdgeAgent(AgentConfig(
            trigger=p["trigger"], use_image=p["use_image"],
            max_frame_age_at_decision_s=p["max_frame_age_at_decision_s"],
            max_clock_skew_s=p["max_clock_skew_s"], max_image_bytes=p["max_image_bytes"],
            max_image_pixels=p["max_image_pixels"]),
            lambda failed: self.link_pub.publish(Bool(data=failed)))

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
        self.create_timer(0.05, self._check_done)
        self.create_timer(1.0, self._publish_diagnostics)
        if p["trigger"] == "periodic":
            self.create_timer(p["period_s"], lambda: self._act(self.agent.on_period(self._now())))
        self.get_logger().info(f"ready: draft {self.model.path} ({self.model.adapter.num_layers} "
                               f"layers), mode {p['mode']}, k={p['block_size']}")

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    # -- inputs -----------------------------------------------------------------------------
    def _on_image(self, msg: CompressedImage) -> None:
        error = self.agent.on_frame(msg, stamp_ns(msg.header.stamp), bytes(msg.data),
                                    self._now())
        if error:
            self.get_logger().warning(f"bad camera frame dropped ({self.agent.bad_frames} so "
                                      f"far): {error}", throttle_duration_sec=1.0)
        elif self.agent.frame is msg:
            # Who instructs can wait for the frame it means (the demo after a scene switch).
            self.frame_pub.publish(msg.header)

    def _on_instruction(self, msg: String) -> None:
        now = self._now()
        self._record(topics.INSTRUCTION, msg)
        self._act(self.agent.on_instruction(msg.data, now))

    def _on_plan(self, msg) -> None:
        self._act(self.agent.on_plan_status(msg.request_id, msg.status, self._now()))

    def _on_cloud(self, topic: str, msg) -> None:
        self.hops.record("receive", msg)
        self._record(topic, msg)
        if self.runner is not None:
            self.runner.deliver(from_ros(msg))

    # -- one request --------------------------------------------------------------------------
    def _act(self, decision: Decision | Refusal | None) -> None:
        """Start or report what the agent decided."""
        if isinstance(decision, Refusal):
            return self._refuse(decision)
        if decision is None:
            return
        p, frame = self.p, decision.frame
        params = DecodingParams(MODES[p["mode"]], p["block_size"], p["max_new_tokens"],
                                p["temperature"], p["top_p"], p["seed"])
        request = DecodeRequest(
            p["robot_id"], decision.request_id, decision.instruction,
            bytes(frame.data) if frame is not None else b"",
            frame.format if frame is not None else "",
            params, Handshake(tokenizer_hash=self.model.fingerprint,
                              target_model_hash=p["target_model_hash"]),
            stamp_ns=decision.stamp_ns)
        try:
            prompt = request_prompt(self.model.prompts, request, p["system_prompt"] or None)
        except (ValueError, OSError) as error:   # e.g. an image the processor cannot take
            return self._refuse(self.agent.refuse(decision.request_id, decision.reason,
                                                  f"no prompt: {error}"))
        self._stop_session("preempted by a new decision")
        self.agent.start(decision)
        if frame is not None:
            self._record(topics.IMAGE, frame)
        self.stream = stream = VerifiedStream(
            decision.request_id, self._publish_verified, self._text, request.stamp_ns)
        self.session = EdgeSession(self.model.adapter, prompt, request, RealClock(),
                                   send=self._send, config=self.config, on_tokens=stream)
        turn = [self.session]
        if p["live_baseline"]:
            self.baseline = self._baseline(request, prompt)
            turn.insert(0 if baseline_first(self.decisions) else 1, self.baseline)
        self.decisions += 1
        self.runner = ActorThread(InTurn(turn), "edge session", on_error=self._on_runner_error)
        self.get_logger().info(f"request {decision.request_id} ({decision.reason}): "
                               f"{decision.instruction!r}")
        self.runner.call(self.runner.actor.start)
        self.runner.start()

    def _baseline(self, request: DecodeRequest, prompt) -> EdgeSession:
        """The decision as cloud-only streaming, its own request to the cloud; its answer
        and statistics carry the decision's request id, on the baseline/ topics."""
        params, config = baseline_setup(request.params, self.config)
        shadow = replace(request, request_id=self.agent.request_ids.next(), params=params)
        tokens_pub = self.baseline_pubs[0]
        stream = VerifiedStream(request.request_id, lambda chunk: tokens_pub.publish(to_ros(chunk)),
                                self._text, request.stamp_ns)
        return EdgeSession(self.model.adapter, prompt, shadow, RealClock(), send=self._send,
                           config=config, on_tokens=stream)

    def _text(self, ids: list[int]) -> str:
        return self.model.tokenizer.decode(ids, skip_special_tokens=True)

    def _send(self, message) -> None:
        self.hops.record("send", message)
        msg = to_ros(message)
        self.publishers_by_type[type(message).__name__].publish(msg)
        self._record(OUTGOING[type(message).__name__], msg)

    def _refuse(self, refusal: Refusal) -> None:
        """A decision that is not started says why: log, /diagnostics and a failed
        RequestStats, so no one waits for its answer."""
        self.get_logger().warning(f"request {refusal.request_id} not started "
                                  f"({refusal.reason}): {refusal.why}", throttle_duration_sec=1.0)
        msg = to_ros(RequestStats(robot_id=self.p["robot_id"], request_id=refusal.request_id,
                                  mode=MODES[self.p["mode"]], ok=False,
                                  error=f"not started: {refusal.why}"))
        self.stats_pub.publish(msg)
        self._record(topics.REQUEST_STATS, msg)
        self._publish_diagnostics()

    def _publish_verified(self, chunk) -> None:
        """On the session's thread: tokens the target has decided, toward the controller."""
        self.agent.chunk_verified(chunk.request_id, chunk.final)
        msg = to_ros(chunk)
        self.verified_pub.publish(msg)
        self._record(topics.VERIFIED_TOKENS, msg)

    def _on_runner_error(self, exc: BaseException) -> None:
        """On the (now ending) worker thread: a draft-model or protocol bug ends the request
        as failed, so the controller stops instead of waiting."""
        self.get_logger().error(f"edge session failed: {exc!r}")
        for session in (self.session, self.baseline):
            if session is not None and not session.done:
                session.abort(f"internal error: {exc!r}")

    def _stop_session(self, reason: str) -> None:
        session, runner = self.session, self.runner
        self.runner = None
        if runner is not None:
            runner.stop()
        for session in (session, self.baseline):
            if session is not None and not session.done:
                session.cancel(reason)          # its worker has stopped: safe on this thread
        self._check_done()

    def _check_done(self) -> None:
        baseline = self.baseline
        if baseline is not None and baseline.done:
            self.baseline = None
            self.baseline_pubs[1].publish(to_ros(replace(
                baseline.stats(), request_id=self.session.request.request_id)))
        session = self.session
        if session is None or not session.done:
            return
        result = self.agent.ended(session.stats(), session.cancelled)
        if result is None:
            return
        stats = to_ros(result)
        self.stats_pub.publish(stats)
        self._record(topics.REQUEST_STATS, stats)
        if not stats.ok:
            self.get_logger().error(f"request {stats.request_id} failed: {stats.error}")
        else:
            self.get_logger().info(f"request {stats.request_id}: {stats.tokens} tokens "
                                   f"in {stats.total_s:.3f} s, {stats.rounds} rounds, "
                                   f"{stats.mean_accepted_per_round:.2f} accepted/round")
        self._publish_diagnostics()

    # -- health ---------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="spec_vlm_control: edge", hardware_id=self.p["robot_id"])
        agent, s = self.agent, self.agent.last_stats
        if agent.link_failed:
            status.level, status.message = DiagnosticStatus.ERROR, f"decode link failed: {s.error}"
        elif agent.refusal:
            status.level, status.message = DiagnosticStatus.WARN, f"no decision: {agent.refusal}"
        elif s is None:
            status.level, status.message = DiagnosticStatus.OK, "no request yet"
        else:
            status.level, status.message = DiagnosticStatus.OK, "decoding"
        if s is not None:
            status.values = [KeyValue(key=k, value=str(v)) for k, v in (
                ("request_id", s.request_id), ("ok", s.ok), ("error", s.error),
                ("tokens", s.tokens),
                ("mean_accepted_per_round", f"{s.mean_accepted_per_round:.2f}"),
                ("early_hit_rate", f"{s.early_hit_rate:.2f}"),
                ("time_to_first_token_s", f"{s.time_to_first_token_s:.3f}"),
                ("total_s", f"{s.total_s:.3f}"))]
        status.values += [KeyValue(key="bad_frames", value=str(agent.bad_frames)),
                          KeyValue(key="last_bad_frame", value=agent.last_bad_frame)]
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
        self.agent.shutdown()           # ends a running plan: no final chunk will come for it
        self._stop_session("edge shutting down")
        if self.recorder is not None:
            with self._record_lock:
                self.recorder.close()


def main(args=None) -> int:
    return spin(EdgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
