"""Real time: an EdgeSession or CloudVerifier driven by one worker thread.

In a deployment (ROS nodes, a zenoh bridge) messages arrive on other threads; `deliver`
queues them, and the worker receives them between units of work, wakes for the session's
timers, and never runs two units of the same side at once. The virtual-time driver in
core/decode.py runs the very same objects; only the loop differs.

The inbox is bounded: beyond `max_inbox` queued messages a delivery is dropped and counted
(the protocol recovers lost messages by resending), so a flood cannot grow memory.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Optional

from .clock import RealClock

IDLE_POLL_S = 0.05
MAX_INBOX = 1024


class ActorThread:
    def __init__(self, actor, name: str = "actor",
                 on_error: Optional[Callable[[BaseException], None]] = None,
                 max_inbox: int = MAX_INBOX):
        """on_error: called (on the worker thread, which then ends) if the actor raises; by
        default the exception propagates and ends the thread."""
        if not isinstance(actor.clock, RealClock):
            raise ValueError("an ActorThread needs an actor on a RealClock")
        self.actor = actor
        self.on_error = on_error
        self.inbox: queue.Queue = queue.Queue()
        self.max_inbox = max_inbox
        self.dropped = 0                  # messages dropped because the inbox was full
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def deliver(self, message) -> None:
        """Thread-safe: hand a received message to the actor, or drop it (counted) when
        `max_inbox` messages are already waiting."""
        if self.inbox.qsize() >= self.max_inbox:
            self.dropped += 1
            return
        self.inbox.put(message)

    def call(self, fn: Callable[[], None]) -> None:
        """Thread-safe: run fn on the worker thread, between units of work (the actor itself
        is not thread-safe)."""
        self.inbox.put(_Call(fn))

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def start(self) -> "ActorThread":
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.inbox.put(None)
        self.thread.join(timeout)

    def _wait_s(self) -> float:
        if self.actor.has_work():
            return 0.0
        wake = getattr(self.actor, "wake_time", None)
        if wake is None:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(0.0, wake() - self.actor.clock.now()))

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a model or protocol bug must not die silently
            if self.on_error is None:
                raise
            self.on_error(exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.inbox.get(timeout=self._wait_s())
                while message is not None:
                    if isinstance(message, _Call):
                        message.fn()
                    else:
                        self.actor.receive(message)
                    message = self.inbox.get_nowait()
            except queue.Empty:
                pass
            if self._stop.is_set():
                return
            self.actor.work()


class _Call:
    def __init__(self, fn: Callable[[], None]):
        self.fn = fn
