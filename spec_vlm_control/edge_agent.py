"""The edge's decisions, without ROS: when to ask for a new action, which camera frame it may
use, and when the controller's plan must be ended by `link_failed`.

The `edge` node (nodes/edge.py) converts messages, runs the decoding sessions and publishes;
every choice it makes about a request is asked of this agent, which is driven by plain
method calls and the times passed in (integer nanoseconds of the edge's clock).

- Triggers: 'instruction' decides on each new instruction; 'plan_finished' also once per
  FINISHED status of the current request; 'periodic' also on every tick of period_s, except
  while a request is in flight (a decision that takes longer than the period still ends).
- Frames: a frame is checked on arrival (stamp, clock skew, bytes, pixels, decodability);
  a bad one is counted and the previous good frame stays. A decision needs a kept frame no
  older than `max_frame_age_at_decision_s`, else it is refused, saying why.
- Text-only (`use_image` false): frames are ignored; the request is stamped with the time
  the decision was asked for (for the instruction trigger: the instruction's arrival), so
  the controller's frame-age rule measures how long the answer took.
- link_failed: false at start and just before the first verified chunk of an answered
  request; true when a request ends failed (not cancelled by the next decision) or the edge
  shuts down before the final chunk went out.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Callable, Optional

from spec_vlm_control.camera.frame import FrameError, check_image, frame_is_fresh
from spec_vlm_control.core.metrics import RequestStats
from spec_vlm_control.core.protocol import PlanStatus, RequestIds

TRIGGERS = ("instruction", "plan_finished", "periodic")


@dataclass(frozen=True)
class AgentConfig:
    """The edge parameters the agent acts on (defaults: config/edge.yaml)."""
    trigger: str
    use_image: bool
    max_frame_age_at_decision_s: float
    max_clock_skew_s: float
    max_image_bytes: int
    max_image_pixels: int


@dataclass(frozen=True)
class Decision:
    """Start request `request_id`: `frame` (None when text-only) as the node received it,
    `stamp_ns` the capture time the request and its chunks carry."""
    request_id: int
    reason: str
    instruction: str
    frame: object
    stamp_ns: int


@dataclass(frozen=True)
class Refusal:
    """Request `request_id` is not started: `why` is reported as its failed RequestStats."""
    request_id: int
    reason: str
    why: str


class EdgeAgent:
    def __init__(self, config: AgentConfig, publish_link_failed: Callable[[bool], None],
                 request_ids: Optional[RequestIds] = None):
        self.config = config
        self.request_ids = request_ids or RequestIds()
        self.instruction = ""
        self.frame: object = None
        self.frame_stamp_ns = 0
        self.bad_frames = 0
        self.last_bad_frame = ""
        self.refusal = ""                   # why the last decision was not started, if it was not
        self.current: Optional[int] = None  # the last request started
        self.in_flight = False              # ... and it has not ended yet
        self.final_sent = False             # ... and its final chunk went out
        self.finished_seen = False          # ... and its FINISHED status was acted on
        self.last_stats: Optional[RequestStats] = None
        self.link_failed: Optional[bool] = None
        self._publish_link_failed = publish_link_failed
        self._link_lock = threading.Lock()
        self._set_link_failed(False)

    # -- inputs -------------------------------------------------------------------------------
    def on_frame(self, frame: object, stamp_ns: int, data: bytes, now_ns: int) -> Optional[str]:
        """Keep `frame` for the next decision if it may be used (its age aside); else why not.
        A text-only agent ignores frames."""
        if not self.config.use_image:
            return None
        try:
            self._check_frame(stamp_ns, data, now_ns)
        except FrameError as error:
            self.bad_frames += 1
            self.last_bad_frame = str(error)
            return self.last_bad_frame
        self.frame, self.frame_stamp_ns = frame, stamp_ns
        return None

    def _check_frame(self, stamp_ns: int, data: bytes, now_ns: int) -> None:
        if stamp_ns <= 0:
            sec, nanosec = divmod(stamp_ns, 10**9)
            raise FrameError(f"stamp {sec}.{nanosec:09d} is not a capture time")
        ahead_s = (stamp_ns - now_ns) * 1e-9
        if ahead_s > self.config.max_clock_skew_s:
            raise FrameError(f"stamped {ahead_s:.3f} s in the future (max_clock_skew_s "
                             f"{self.config.max_clock_skew_s:g})")
        check_image(data, self.config.max_image_bytes, self.config.max_image_pixels)

    def on_instruction(self, text: str, now_ns: int) -> Decision | Refusal | None:
        self.instruction = text.strip()
        return self.decide("instruction", now_ns)

    def on_plan_status(self, request_id: int, status: int,
                       now_ns: int) -> Decision | Refusal | None:
        """Trigger 'plan_finished' (and 'periodic'): once per FINISHED of the current request."""
        if self.config.trigger == "instruction" or status != PlanStatus.FINISHED \
                or request_id != self.current or self.finished_seen:
            return None
        self.finished_seen = True
        return self.decide("plan finished", now_ns)

    def on_period(self, now_ns: int) -> Decision | Refusal | None:
        """Trigger 'periodic': a tick while a request is in flight lets it finish."""
        if self.config.trigger != "periodic" or self.in_flight:
            return None
        return self.decide("period", now_ns)

    # -- one request --------------------------------------------------------------------------
    def decide(self, reason: str, now_ns: int) -> Decision | Refusal | None:
        """A new request with the current instruction (none without one); the node starts it
        with `start` (cancelling the one in flight) or reports it with `refuse`."""
        if not self.instruction:
            return None
        request_id = self.request_ids.next()
        if not self.config.use_image:
            return Decision(request_id, reason, self.instruction, None, now_ns)
        if self.frame is None or not frame_is_fresh(
                self.frame_stamp_ns, now_ns, self.config.max_frame_age_at_decision_s,
                self.config.max_clock_skew_s):
            dropped = f" ({self.bad_frames} bad frames dropped, the last: " \
                      f"{self.last_bad_frame})" if self.bad_frames else ""
            return self.refuse(request_id, reason, "no usable camera frame younger than "
                               f"{self.config.max_frame_age_at_decision_s:g} s{dropped}")
        return Decision(request_id, reason, self.instruction, self.frame, self.frame_stamp_ns)

    def refuse(self, request_id: int, reason: str, why: str) -> Refusal:
        self.refusal = why
        return Refusal(request_id, reason, why)

    def start(self, decision: Decision) -> None:
        """`decision` now runs; the request in flight before it has been ended (`ended`)."""
        self.refusal = ""
        self.current, self.in_flight = decision.request_id, True
        self.final_sent = self.finished_seen = False

    def chunk_verified(self, request_id: int, final: bool) -> None:
        """On the session's thread, before the chunk is published: an answered request
        clears a past link failure first, so the controller takes its plan."""
        if request_id == self.current:
            self._set_link_failed(False)
            self.final_sent = final

    def ended(self, stats: RequestStats, cancelled: bool) -> Optional[RequestStats]:
        """The request in flight ended with `stats`: what to report (None: already reported).
        A request that failed, other than by being cancelled, ends the controller's plan."""
        if not self.in_flight or stats.request_id != self.current:
            return None
        self.in_flight = False
        if stats.ok and not self.final_sent:
            # The cloud ended the session before the answer did (a Cancel from elsewhere):
            # the controller must not run a cut text as if it were whole.
            stats = replace(stats, ok=False, error=f"answer ended after {stats.tokens} tokens "
                                                   "without its final chunk")
        self.last_stats = stats
        if not stats.ok and not cancelled:
            self._set_link_failed(True)
        return stats

    def shutdown(self) -> None:
        """The edge stops: a plan whose final chunk has not gone out will get none."""
        if self.in_flight and not self.final_sent:
            self._set_link_failed(True)

    def _set_link_failed(self, failed: bool) -> None:
        """From the node's thread and the session's: each change published once, in order."""
        with self._link_lock:
            if failed != self.link_failed:
                self.link_failed = failed
                self._publish_link_failed(failed)
