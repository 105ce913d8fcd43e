"""The controller core: verified text in, safe velocity commands out.

One plan at a time, keyed by request id. Each chunk of verified text is parsed as it
arrives; complete steps queue on the executor, which starts the first one at once
(see `on_chunk`) while later ones are still being decoded. Every way a plan can go wrong —
a bad step, a lost chunk, a too-old or future camera frame, too much text, e-stop, link
failure, an obstacle — ends it the same way: clear the executor, stop the backend now,
report why. A plan runs at most once: chunks of a request that has ended are ignored.

Chunks come in and plan events go out as the protocol's own types (core/protocol.py
VerifiedTokens and PlanStatus). The ROS node is a thin adapter over this class: it converts
messages to the calls below (nodes/convert.py), calls `tick()` from a timer, and publishes
`events` and `incidents`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Optional

from ..action import ActionLimits, PlanError, PlanStream, format_step
from ..core.protocol import PlanStatus, VerifiedTokens
from .backends import Backend
from .executor import PlanExecutor
from .motion import STOP, Command, MotionLimits, StepMotion
from .safety import ObstacleGate, Watchdog


class Level(IntEnum):
    """Mirrors diagnostic_msgs/DiagnosticStatus levels."""
    OK = 0
    WARN = 1
    ERROR = 2


NS_PER_S = 1_000_000_000


def frame_age_s(chunk: VerifiedTokens, received_ns: int) -> float:
    """Age of the chunk's frame on arrival, negative for a stamp from the future.
    `received_ns` is the local clock, the same clock as the stamp's: camera, edge and
    controller share the robot's host."""
    return (received_ns - chunk.stamp_ns) / NS_PER_S


@dataclass(frozen=True)
class Incident:
    """Something the operator should see: a log line and a diagnostics entry."""
    level: Level
    message: str


@dataclass(frozen=True)
class ControllerConfig:
    action: ActionLimits = ActionLimits()
    motion: MotionLimits = MotionLimits()
    rate_hz: float = 20.0
    watchdog_timeout_s: float = 0.2
    max_frame_age_at_start_s: float = 1.0
    max_clock_skew_s: float = 0.05
    max_plan_chars: int = 256
    recent_plans: int = 256
    obstacle_stop_m: float = 0.4
    obstacle_max_age_s: float = 0.5


@dataclass
class Plan:
    request_id: int
    stream: PlanStream
    frame_time: float       # monotonic time at which the frame was captured
    next_seq: int = 0
    chars: int = 0          # text received so far
    steps: int = 0
    final: bool = False
    started: bool = False


@dataclass(frozen=True)
class Health:
    """One entry of the periodic diagnostics."""
    name: str
    level: Level
    message: str
    values: dict[str, str]


class Controller:
    def __init__(self, config: ControllerConfig, backend: Backend):
        self.config = config
        self.backend = backend
        self.events: list[PlanStatus] = []     # drained by the node
        self.incidents: list[Incident] = []    # drained by the node (log + diagnostics)
        self.last_step = ""                    # the last finished step and its duration
        self.executor = PlanExecutor(self.config.motion, 1.0 / self.config.rate_hz)
        self.watchdog = Watchdog(self.config.watchdog_timeout_s, self.backend.stop)
        self.obstacle = ObstacleGate(self.config.obstacle_stop_m, self.config.obstacle_max_age_s)
        self.plan: Optional[Plan] = None
        # The request ids of the last `recent_plans` ended plans, oldest first, and as a set
        # for lookups: any chunk of one of them, chunk 0 included, is ignored (at most once;
        # a restarted edge draws new ids, see core.protocol.RequestIds).
        self.ended: deque[int] = deque()
        self.ended_set: set[int] = set()
        self.estop = False
        self.link_failed = False
        self.sent = STOP

    # -- inputs ---------------------------------------------------------------------------

    def on_chunk(self, chunk: VerifiedTokens, received_ns: int, now: float) -> bool:
        """Take a chunk of verified text that arrived at `received_ns` (the robot's clock,
        for the frame's age; `now` is the monotonic control clock). True when a verified
        step now waits and none runs: the caller should tick at once rather than at the
        next period, so that a step starts as soon as it is verified."""
        if chunk.request_id in self.ended_set:
            if chunk.seq == 0:
                self._incident(Level.WARN, f"request {chunk.request_id} has ended: its "
                                           "repeated chunk 0 is ignored")
            return False  # a plan runs at most once
        if self.plan is None or chunk.request_id != self.plan.request_id:
            if self.plan is not None:
                self._end(PlanStatus.PREEMPTED, f"preempted by request {chunk.request_id}", now)
            age = frame_age_s(chunk, received_ns)
            self.plan = Plan(chunk.request_id, PlanStream(self.config.action),
                             frame_time=now - age)
            refusal = self._refusal(chunk, age)
            if refusal:
                self._end(PlanStatus.REJECTED, refusal, now)
                return False
        plan = self.plan
        if chunk.seq < plan.next_seq:
            return False  # duplicate
        if chunk.seq > plan.next_seq:
            self._end(PlanStatus.REJECTED, f"lost chunks {plan.next_seq}..{chunk.seq - 1}", now)
            return False
        plan.next_seq += 1
        plan.chars += len(chunk.text_delta)
        if plan.chars > self.config.max_plan_chars:
            # Checked before parsing: an oversized chunk is never split or scanned.
            self._end(PlanStatus.REJECTED, f"plan text longer than "
                                           f"{self.config.max_plan_chars} characters", now)
            return False
        try:
            steps = plan.stream.feed(chunk.text_delta, chunk.final)
        except PlanError as error:
            self._end(PlanStatus.REJECTED, str(error), now)
            return False
        for note in plan.stream.notes:
            self._incident(Level.WARN, f"request {plan.request_id}: {note}")
        plan.stream.notes.clear()
        self.executor.push(steps)
        plan.steps += len(steps)
        plan.final = chunk.final
        if plan.final and plan.steps == 0:
            self._end(PlanStatus.REJECTED, "empty plan", now)
        return bool(steps) and self.executor.active is None

    def on_estop(self, engaged: bool, now: float) -> None:
        if engaged and not self.estop:
            self._incident(Level.ERROR, "e-stop engaged")
            self._end(PlanStatus.PREEMPTED, "e-stop", now, always_stop=True)
        elif self.estop and not engaged:
            self._incident(Level.OK, "e-stop released")
        self.estop = engaged

    def on_link(self, failed: bool, now: float) -> None:
        if failed and not self.link_failed:
            self._incident(Level.ERROR, "decode link failed")
            self._end(PlanStatus.PREEMPTED, "decode link failed", now, always_stop=True)
        elif self.link_failed and not failed:
            self._incident(Level.OK, "decode link restored")
        self.link_failed = failed

    def on_range(self, range_m: float, now: float) -> None:
        self.obstacle.update(range_m, now)
        veto = self.obstacle.veto(self.sent, now)
        if veto:
            self._end(PlanStatus.PREEMPTED, veto, now)

    # -- control loop ---------------------------------------------------------------------

    def tick(self, now: float) -> Command:
        """One control period: advance the plan, apply the safety gates, send."""
        command = self.executor.tick(now)
        for step, ran_s in self.executor.finished:
            planned = StepMotion.of(step, self.config.motion).planned_duration(
                self.config.motion.max_step_s)
            self.last_step = f"{format_step(step)}: {ran_s:.2f} s (planned {planned:.2f} s)"
        self.executor.finished.clear()
        plan = self.plan
        if plan is not None and self.executor.started and not plan.started:
            age = now - plan.frame_time
            if age > self.config.max_frame_age_at_start_s:
                self._end(PlanStatus.REJECTED, self._too_old(age), now)
                return self.sent
            plan.started = True
            self.events.append(PlanStatus(plan.request_id, PlanStatus.STARTED))
        veto = self.obstacle.veto(command, now)
        if veto:
            self._end(PlanStatus.PREEMPTED, veto, now)
            return self.sent
        if plan is not None and plan.final and self.executor.idle:
            self._end(PlanStatus.FINISHED, "", now)
            return self.sent
        for error in self.backend.drain_errors():
            self._incident(Level.ERROR, f"{self.backend.name} backend: {error}")
        self._send(command, now)
        return command

    def health(self, now: float) -> list[Health]:
        """Current state, for the periodic diagnostics."""
        plan = self.plan
        if self.estop:
            safety = (Level.ERROR, "e-stop engaged")
        elif self.link_failed:
            safety = (Level.ERROR, "decode link failed")
        else:
            safety = (Level.OK, "ok")
        range_m = self.obstacle.fresh_range(now)
        state = "idle" if plan is None else ("running" if plan.started else "waiting")
        return [
            Health("safety", *safety, {
                "estop": str(self.estop), "link_failed": str(self.link_failed),
                "range_m": "none" if range_m is None else f"{range_m:.2f}",
                "watchdog_trips": str(self.watchdog.trips)}),
            Health("plan", Level.OK, state, {
                "request_id": "" if plan is None else str(plan.request_id),
                "active_step": ("" if self.executor.active is None
                                else format_step(self.executor.active.step)),
                "queued_steps": str(len(self.executor.queue)),
                "last_step": self.last_step}),
        ]

    def close(self) -> None:
        self.executor.clear()
        self.backend.stop()
        self.watchdog.close()
        self.backend.close()

    # -- helpers --------------------------------------------------------------------------

    def _refusal(self, chunk: VerifiedTokens, age: float) -> Optional[str]:
        """Why a new plan may not start at all, or None."""
        if self.estop:
            return "e-stop engaged"
        if self.link_failed:
            return "decode link failed"
        if chunk.seq != 0:
            return f"plan starts at chunk {chunk.seq}, not 0"
        if chunk.stamp_ns < 0:   # before 1970, or malformed (nodes/convert.py stamp_ns)
            return f"invalid frame stamp ({chunk.stamp_ns} ns)"
        if age < -self.config.max_clock_skew_s:
            return (f"frame stamp {-age:.2f} s in the future "
                    f"(clock skew limit {self.config.max_clock_skew_s:.2f} s)")
        if age > self.config.max_frame_age_at_start_s:
            return self._too_old(age)
        return None

    def _too_old(self, age: float) -> str:
        return f"frame too old ({age:.2f} s > {self.config.max_frame_age_at_start_s:.2f} s)"

    def _end(self, status: int, detail: str, now: float, always_stop: bool = False) -> None:
        """End the current plan (if any): stop at once, remember it, report it.

        `always_stop` sends a stop even when idle (e-stop, link failure).
        """
        self.executor.clear()
        self._send(STOP, now, always_stop)
        plan, self.plan = self.plan, None
        if plan is None:
            return
        self.ended.append(plan.request_id)
        self.ended_set.add(plan.request_id)
        if len(self.ended) > self.config.recent_plans:
            self.ended_set.discard(self.ended.popleft())
        self.events.append(PlanStatus(plan.request_id, status, detail))
        if status in (PlanStatus.REJECTED, PlanStatus.PREEMPTED):
            level = Level.ERROR if status == PlanStatus.REJECTED else Level.WARN
            self._incident(level, f"request {plan.request_id} {PlanStatus.NAMES[status]}: "
                                  f"{detail}")

    def _incident(self, level: Level, message: str) -> None:
        self.incidents.append(Incident(level, message))

    def _send(self, command: Command, now: float, always_stop: bool = False) -> None:
        if not command.moving and (self.sent.moving or always_stop):
            self.backend.stop()  # before any posture change
        if command.posture:
            self.backend.posture(command.posture)
        if command.moving:
            self.backend.command(command)
        self.sent = command
        self.watchdog.renew(command.moving, now)
