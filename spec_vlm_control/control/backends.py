"""Backends: where velocity commands leave the controller.

The controller calls `command()` every control tick while a step moves the robot,
`stop()` once when motion ends (and the watchdog may call it from its own thread),
and `posture()` when a stand/sit step starts. No call may block the caller.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Callable

from .motion import Command


class Backend(ABC):
    name = "backend"

    @abstractmethod
    def command(self, command: Command) -> None:
        """Move at this velocity (renewed every tick while moving)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop now; safe to call from any thread."""

    def posture(self, verb: str) -> None:
        """Change posture ('stand' or 'sit'), where the robot interface supports it."""

    def drain_errors(self) -> list[str]:
        """Errors reported by the robot since the last call, for diagnostics."""
        return []

    def close(self) -> None:
        """Release the robot interface."""


class TwistBackend(Backend):
    """Velocity messages (geometry_msgs/Twist on /cmd_vel), published through `publish`.

    Publishes at the control rate while a step runs and one explicit zero at the end:
    nothing while idle, so a twist_mux or teleop is not overridden by an idle robot.
    """
    name = "twist"

    def __init__(self, publish: Callable[[float, float, float], None]):
        self._publish = publish
        self._lock = threading.Lock()  # the watchdog thread may stop concurrently

    def command(self, command: Command) -> None:
        with self._lock:
            self._publish(command.vx, command.vy, command.vyaw)

    def stop(self) -> None:
        with self._lock:
            self._publish(0.0, 0.0, 0.0)
