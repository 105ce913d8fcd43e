"""Backend `unitree`: the Go2's sport service through unitree_sdk2py's SportClient.

Every SDK call runs on one worker thread, never on the caller's: calls that wait for a
reply (StopMove, StandUp, Sit...) block until the client's timeout when the robot is
silent, and even `Move` blocks while no robot has matched the request topic. The
control loop and the watchdog only queue work here, and the queue keeps just what is
still worth doing: a new `Move` replaces a pending one (the latest velocity wins), a
stop discards pending moves. Non-zero return codes are kept for diagnostics, each
distinct one at most once per second (a silent robot fails every Move at 20 Hz).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .backends import Backend
from .motion import Command

# SportClient method -> api id (unitree_sdk2py go2/sport/sport_api.py), for messages.
API_IDS = {"BalanceStand": 1002, "StopMove": 1003, "StandUp": 1004, "Move": 1008, "Sit": 1009}
POSTURE_CALLS = {"stand": ("StandUp", "BalanceStand"), "sit": ("Sit",)}
ERROR_REPEAT_S = 1.0


@dataclass(frozen=True)
class SportCall:
    method: str
    args: tuple = ()


class UnitreeBackend(Backend):
    name = "unitree"

    def __init__(self, client: Any):
        """`client`: an initialised SportClient (anything with its methods)."""
        self._client = client
        self._queue: deque[SportCall] = deque()
        self._wake = threading.Condition()
        self._errors: list[str] = []
        self._reported: dict[str, float] = {}  # error -> when it was last reported
        self._closing = False
        self._worker = threading.Thread(target=self._run, name="sport-client", daemon=True)
        self._worker.start()

    @classmethod
    def connect(cls, interface: str, domain_id: int, timeout_s: float) -> "UnitreeBackend":
        """Join the robot's DDS domain on `interface` and build the sport client."""
        from unitree_sdk2py.core.channel import ChannelFactoryInitialize
        from unitree_sdk2py.go2.sport.sport_client import SportClient
        ChannelFactoryInitialize(domain_id, interface)
        client = SportClient()
        client.SetTimeout(timeout_s)
        client.Init()
        return cls(client)

    def command(self, command: Command) -> None:
        self._post(SportCall("Move", (command.vx, command.vy, command.vyaw)), drop=("Move",))

    def stop(self) -> None:
        self._post(SportCall("StopMove"), drop=("Move", "StopMove"))

    def posture(self, verb: str) -> None:
        for method in POSTURE_CALLS[verb]:
            self._post(SportCall(method), drop=())

    def drain_errors(self) -> list[str]:
        with self._wake:
            errors, self._errors = self._errors, []
        return errors

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._worker.join(timeout=5.0)

    def _post(self, call: SportCall, drop: tuple[str, ...]) -> None:
        with self._wake:
            kept = [c for c in self._queue if c.method not in drop]
            self._queue.clear()
            self._queue.extend(kept)
            self._queue.append(call)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return  # closing, and every queued call went out (a final stop included)
                call = self._queue.popleft()
            self._call(call)

    def _call(self, call: SportCall) -> None:
        what = f"{call.method} ({API_IDS[call.method]})"
        try:
            code = getattr(self._client, call.method)(*call.args)
        except Exception as error:  # an SDK failure must not kill the worker
            code = f"raised {error!r}"
        if code == 0:
            return
        error, now = f"{what} returned {code}", time.monotonic()
        if now - self._reported.get(error, -ERROR_REPEAT_S) >= ERROR_REPEAT_S:
            self._reported[error] = now
            with self._wake:
                self._errors.append(error)
