"""Safety mechanisms that sit between the plan and the backend.

- Watchdog: a thread of its own stops the backend when no fresh motion command came
  within `timeout_s`, so a stalled control loop (or a callback that blocks it) cannot
  leave the robot walking. A command is valid for 3/4 of the timeout and the thread
  checks every 1/4, so the stop comes at most `timeout_s` after the last command.
- ObstacleGate: the latest range reading straight ahead vetoes forward motion closer
  than a configured distance.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable, Optional

from .motion import Command


class Watchdog:
    def __init__(self, timeout_s: float, stop: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic):
        self.timeout_s = timeout_s
        self._stop = stop
        self._clock = clock
        self._lock = threading.Lock()
        self._moving = False
        self._renewed_at = 0.0
        self.trips = 0
        self._closing = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def renew(self, moving: bool, now: float) -> None:
        """Record the command just sent."""
        with self._lock:
            self._moving = moving
            self._renewed_at = now

    def check(self, now: float) -> bool:
        """Stop the backend if motion was not renewed in time; True if it did."""
        with self._lock:
            expired = self._moving and now - self._renewed_at > 0.75 * self.timeout_s
            if expired:
                self._moving = False
                self.trips += 1
        if expired:
            self._stop()
        return expired

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing.wait(self.timeout_s / 4.0):
            self.check(self._clock())

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join()


class ObstacleGate:
    def __init__(self, stop_distance_m: float, max_age_s: float):
        self.stop_distance_m = stop_distance_m
        self.max_age_s = max_age_s
        self.range_m: Optional[float] = None
        self.received_at = -math.inf

    def update(self, range_m: float, now: float) -> None:
        """A range reading (REP 117: +inf nothing in range, -inf too close, nan invalid)."""
        if math.isnan(range_m):
            return
        self.range_m = range_m
        self.received_at = now

    def fresh_range(self, now: float) -> Optional[float]:
        """The latest reading if it is recent enough to act on (the sensor is optional)."""
        if now - self.received_at > self.max_age_s:
            return None
        return self.range_m

    def veto(self, command: Command, now: float) -> Optional[str]:
        """Why `command` must not be sent, or None."""
        range_m = self.fresh_range(now)
        if command.vx > 0.0 and range_m is not None and range_m < self.stop_distance_m:
            return f"obstacle {range_m:.2f} m ahead (stop distance {self.stop_distance_m:.2f} m)"
        return None
