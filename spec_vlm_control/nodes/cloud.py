"""`cloud` node (server): the target VLM with exit heads, verifying for many robots at once.

Runs one CloudVerifier (core/cloud.py) on a thread of its own; sessions are keyed by
(robot_id, request_id), each with its own KV cache, expire when idle, and are bounded in
number and cached tokens (a request beyond the bound gets an OVERLOADED error).

Subscribes  spec_vlm/request, spec_vlm/draft, spec_vlm/cancel (protocol QoS)
Publishes   spec_vlm/verdict (early and final), spec_vlm/committed, spec_vlm/error,
            /diagnostics (sessions, refusals, and over the last second the batched
            passes' mean batch_size, queue_wait_p99_ms, busy_fraction, padding_fraction)

Faults. Request-level: anything a message can cause (a field out of range, a block beyond
max_block_tokens, token ids outside the vocabulary, an undecodable or oversized image, a
prompt that fails to build or exceeds max_prompt_tokens) is answered with DecodeError
BAD_REQUEST naming the cause (core/validation.py); that request ends and this process keeps
serving every other. Process-level: out of memory, a CUDA error, or any exception escaping the
verifier thread (a bug) exits the process with status 1, so that the edges' deadlines and the
supervisor's respawn take over; a bad parameter exits 1 at startup with one line.
"""
from __future__ import annotations

import os
import time

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from std_msgs.msg import Header

import spec_vlm_control.msg as ros
from spec_vlm_control import hops, topics
from spec_vlm_control.core.clock import RealClock
from spec_vlm_control.core.cloud import CloudConfig, CloudVerifier
from spec_vlm_control.core.models.loading import DTYPES, load_model
from spec_vlm_control.core.prompts import request_prompt
from spec_vlm_control.core.protocol import DecodeRequest
from spec_vlm_control.core.realtime import ActorThread
from spec_vlm_control.core.target_pass import TargetPass
from spec_vlm_control.nodes.common import (PROTOCOL_QOS, ConfigError, OneOf, Range,
                                           declare_parameters, spin)
from spec_vlm_control.nodes.convert import from_ros, to_ros

PARAMETERS = {
    "model": ("", "target model: a local folder, a repo id in the local HF cache, or a .gguf"),
    "dtype": ("fp32", "weights' precision", OneOf(tuple(DTYPES))),
    "device": ("cpu", "where the target runs", OneOf(("cpu", "cuda"))),
    "threads": (0, "torch CPU threads (0 = torch's default)", Range(0, 1024)),
    "system_prompt": ("", "system message of every prompt; must equal the edges'"),
    "exit_layers": ([-1], "decoder layers (0-based) whose exit heads send early verdicts; "
                          "[-1] = none; each below the target's layer count", Range(-1, 1023)),
    "exit_adapters": ("", "folder of trained exit adapters (spec-vlm train-exits); empty = "
                          "untrained exits through the shared norm and LM head"),
    "candidate_top": (0, "exit heads score only the draft tokens plus this many candidates "
                         "(0 = the full vocabulary)", Range(0, 262144)),
    "target_model_hash": ("", "this target's identity, checked against the edges' expectation"),
    "max_sessions": (8, "active sessions at most (each holds a KV cache)", Range(1, 4096)),
    "max_cached_tokens": (65536, "KV-cache tokens at most, summed over active sessions",
                          Range(1)),
    "session_ttl_s": (60.0, "a session that hears nothing for this long is dropped",
                      Range(0.0, 86400.0, low_open=True)),
    "max_sessions_per_robot": (2, "active sessions of one robot_id at most (beyond: "
                                  "OVERLOADED)", Range(1, 4096)),
    "max_requests_per_s": (10.0, "new requests of one robot_id per second, on average "
                                 "(beyond: RATE_LIMITED)", Range(0.0, 1e6, low_open=True)),
    "request_burst": (20, "new requests of one robot_id at once (token bucket size)",
                      Range(1, 1_000_000)),
    "max_inbox": (1024, "messages waiting for the verifier at most; a flood beyond is "
                        "dropped and counted", Range(1, 1_000_000)),
    "max_block_tokens": (64, "draft tokens in one block (and block_size) at most",
                         Range(1, 4096)),
    "max_new_tokens": (1024, "new tokens one request may ask for at most", Range(1, 65535)),
    "max_instruction_chars": (2000, "characters of a request's instruction at most",
                              Range(1, 100000)),
    "max_image_bytes": (4194304, "bytes of a request's image at most", Range(1)),
    "max_image_pixels": (8388608, "pixels of a request's image at most, as its header "
                                  "declares them (checked before decoding)", Range(1)),
    "max_prompt_tokens": (4096, "tokens of a request's prompt (instruction, image, template) "
                                "at most", Range(1)),
    "max_batch_sessions": (8, "sessions verified in one batched target pass at most (1 = one "
                              "session per pass)", Range(1, 4096)),
    "pass_token_budget": (256, "positions one target pass computes (sessions x longest row; "
                               "the oldest work runs even beyond it); a prompt prefill feeds "
                               "at most this many per pass", Range(1, 1_000_000)),
    "max_wait_ms": (50.0, "work ready this long goes first; a new prompt's prefill yields to "
                          "the other sessions' passes until then", Range(0.0, 60000.0)),
    "max_prefill_padding": (0.25, "a prompt chunk beside other sessions' rows is at most as "
                                  "wide as keeps this share of the pass's positions padding, "
                                  "until it has waited max_wait_ms", Range(0.0, 1.0)),
}
ADMISSION = ("max_sessions_per_robot", "max_requests_per_s", "request_burst")
SCHEDULING = ("max_batch_sessions", "pass_token_budget", "max_wait_ms", "max_prefill_padding")
LIMITS = ("max_block_tokens", "max_new_tokens", "max_instruction_chars", "max_image_bytes",
          "max_image_pixels", "max_prompt_tokens")

OUTGOING = {"Verdict": topics.VERDICT, "CommittedTokens": topics.COMMITTED,
            "DecodeError": topics.ERROR}


class CloudNode(Node):
    def __init__(self):
        super().__init__("cloud")
        p = declare_parameters(self, PARAMETERS)
        if not p["model"]:
            raise ValueError("parameter 'model' is required (the target model)")
        if p["threads"] > 0:
            torch.set_num_threads(p["threads"])
        self.model = load_model(p["model"], p["dtype"], p["device"])
        target = self.model.adapter
        layers = [layer for layer in p["exit_layers"] if layer >= 0]
        if any(layer >= target.num_layers for layer in layers):
            raise ConfigError(f"parameter 'exit_layers' = {p['exit_layers']!r}: must be below "
                              f"{target.num_layers}, the target's decoder layers")
        adapters = {}
        if p["exit_adapters"]:
            from spec_vlm_control.core.exit_training import load_exit_adapters
            adapters = load_exit_adapters(p["exit_adapters"], target)
        target_pass = TargetPass.with_layers(target, layers, adapters,
                                             p["candidate_top"] or None)
        self.system_prompt = p["system_prompt"] or None
        self.verifier = CloudVerifier(
            target, self._prompt_for, RealClock(), send=self._send,
            config=CloudConfig(max_sessions=p["max_sessions"],
                               max_cached_tokens=p["max_cached_tokens"],
                               session_ttl_s=p["session_ttl_s"],
                               **{name: p[name] for name in LIMITS},
                               **{name: p[name] for name in ADMISSION},
                               **{name: p[name] for name in SCHEDULING},
                               tokenizer_hash=self.model.fingerprint,
                               target_model_hash=p["target_model_hash"]),
            target_pass=target_pass)
        self.hops = hops.open_log("cloud")          # off unless SPEC_VLM_HOPS is set
        if self.hops.enabled:
            self._pass_start_ns = self._free_ns = self._end_ns = 0
            self._ended: set[tuple[str, int]] = set()   # requests whose busy time is due
            self.verifier.work = self._timed(self.verifier.work)
        self.runner = ActorThread(self.verifier, "cloud verifier", on_error=self._on_error,
                                  max_inbox=p["max_inbox"])
        self.publishers_by_type = {name: self.create_publisher(getattr(ros, name), topic,
                                                               PROTOCOL_QOS)
                                   for name, topic in OUTGOING.items()}
        for topic, type_name in topics.UPLINK.items():
            self.create_subscription(getattr(ros, type_name), topic,
                                     self._on_edge, PROTOCOL_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.runner.start()
        self.get_logger().info(f"ready: target {self.model.path} ({target.num_layers} layers), "
                               f"exits at {layers or 'none'}")

    def _prompt_for(self, request: DecodeRequest):
        return request_prompt(self.model.prompts, request, self.system_prompt)

    def _on_edge(self, msg) -> None:
        self.hops.record("receive", msg)
        self.runner.deliver(from_ros(msg))

    def _timed(self, work):
        """The verifier's unit of work, timed for the final verdicts it sends (hop timeline
        only): it starts their pass, and the worker was free since the previous one ended."""
        def timed_work() -> None:
            self._free_ns, self._pass_start_ns = self._end_ns, time.monotonic_ns()
            work()
            self._end_ns = time.monotonic_ns()
            self._record_busy()
        return timed_work

    def _record_busy(self) -> None:
        """Every unit of work of each request that has ended since the last call (hops.BUSY),
        once the unit that ended it is in its session's list; on the verifier's RealClock,
        time.monotonic, the clock of the hop records."""
        for key in self._ended:
            s = self.verifier.sessions.get(key)
            for start, end in s.busy if s is not None else ():
                self.hops.record("busy_start", s.request, round(start * 1e9))
                self.hops.record("busy_end", s.request, round(end * 1e9))
        self._ended.clear()

    def _send(self, message) -> None:
        if self.hops.enabled:
            kind = hops.kind_of(message)
            if kind == "final":
                self.hops.record("free", message, self._free_ns)
                self.hops.record("pass_start", message, self._pass_start_ns)
                self.hops.record("pass_end", message)
            if kind == "error" or getattr(message, "finished", False):
                self._ended.add((message.robot_id, message.request_id))
        msg = to_ros(message)
        self.hops.record("send", message)
        self.publishers_by_type[type(message).__name__].publish(msg)

    def _on_error(self, exc: BaseException) -> None:
        """A broken verifier must not leave robots waiting on a live-looking node: exit, so
        that the edges' deadlines and the launch file's respawn take over."""
        self.get_logger().fatal(f"cloud verifier failed: {exc!r}")
        os._exit(1)

    def _publish_diagnostics(self) -> None:
        sessions = list(self.verifier.sessions.values())
        active = [s for s in sessions if not s.finished]
        status = DiagnosticStatus(
            name="spec_vlm_control: cloud", level=DiagnosticStatus.OK,
            message=f"{len(active)} active sessions",
            values=[KeyValue(key="active_sessions", value=str(len(active))),
                    KeyValue(key="remembered_sessions", value=str(len(sessions))),
                    KeyValue(key="refused_messages", value=str(self.verifier.refused)),
                    KeyValue(key="dropped_messages", value=str(self.runner.dropped)),
                    KeyValue(key="target_passes",
                             value=str(sum(s.counts["passes"] for s in sessions))),
                    *(KeyValue(key=key, value=f"{value:.3g}") for key, value in
                      self.verifier.log.summary(self.verifier.clock.now(), 1.0).items())])
        if not self.runner.running:
            status.level, status.message = DiagnosticStatus.ERROR, "verifier thread stopped"
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    def close(self) -> None:
        self.runner.stop()


def main(args=None) -> int:
    return spin(CloudNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
