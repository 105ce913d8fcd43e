"""Which cloud replica serves which request, when several replicas sit behind a zenoh router
(docs/scaleout.md). Pure: no ROS, no zenoh.

Each replica's bridge holds the liveliness token `spec_vlm/replicas/<replica_id>` while its
verifier is up. A robot's bridge keeps the live set from these tokens and assigns each new
request by rendezvous (highest-random-weight) hashing of (robot_id, request_id) over the live
replicas: every robot computes the answer alone, with no table shared between sites; a
replica that joins takes about 1/n of the new requests, and one that leaves moves only its
own. Assignment is sticky: a request's blocks and its cancel go where the request went, even
after others join, and nowhere once that replica is gone (its requests are answered with
SESSION_GONE by the robot's bridge). The table is bounded; the oldest entries are forgotten,
and a forgotten request's messages follow the hash again (the same replica unless the live
set changed since).

A replica whose token lives but which answers nothing (a wedged verifier, or a process that
holds a token without serving) would otherwise take 1/n of the new requests, each ending only
by the edge's deadline. So a request that hears nothing from its replica within
`answer_within_s` is failed like a gone replica's, and that replica takes no new request for
`RETRY_SILENT_AFTER` times that bound, or until any of its requests is answered or its token
is declared again.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Optional

TOKENS = "spec_vlm/replicas"
RETRY_SILENT_AFTER = 10     # x answer_within_s: a silent replica's pause before it is tried again


def token_key(replica_id: str) -> str:
    if not replica_id or any(c in replica_id for c in "/*$?#"):
        raise ValueError(f"replica_id {replica_id!r} cannot be part of a key expression")
    return f"{TOKENS}/{replica_id}"


def replica_of(key_expr: str) -> str:
    """The replica id of a liveliness token's key expression."""
    prefix, _, replica_id = str(key_expr).rpartition("/")
    if prefix != TOKENS or not replica_id:
        raise ValueError(f"not a replica token: {key_expr}")
    return replica_id


def weight(replica_id: str, robot_id: str, request_id: int) -> int:
    """A hash every process computes alike (Python's hash() is salted per process)."""
    text = f"{replica_id}\0{robot_id}\0{request_id}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def rendezvous(robot_id: str, request_id: int, replicas: Iterable[str]) -> Optional[str]:
    """The replica of highest weight for this request; None when there is none."""
    return max(replicas, key=lambda r: (weight(r, robot_id, request_id), r), default=None)


@dataclass
class Route:
    replica: str
    epoch: int = 0            # the last cloud_epoch heard for the request (0: none yet)
    ended: bool = False       # finished, failed or cancelled: nothing left to fail
    gone: bool = False        # its replica left: its messages go nowhere
    sent: float = 0.0         # time.monotonic() when it was assigned
    answered: bool = False    # its replica has sent a message for it


class Assignments:
    """The live replicas and the sticky request -> replica table of one robot's bridge.
    Thread-safe: zenoh's callbacks and ROS's executor both call it."""

    def __init__(self, max_requests: int = 1024, answer_within_s: float = 5.0):
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.max_requests = max_requests
        self.answer_within_s = answer_within_s
        self.live: set[str] = set()
        self.silent: dict[str, float] = {}      # replica -> until when it takes no request
        self._routes: OrderedDict[tuple[str, int], Route] = OrderedDict()
        self._lock = threading.Lock()

    def join(self, replica_id: str) -> bool:
        """A replica's token appeared; True when it was not live already."""
        with self._lock:
            new = replica_id not in self.live
            self.live.add(replica_id)
            self.silent.pop(replica_id, None)
            return new

    def leave(self, replica_id: str) -> list[tuple[str, int, int]]:
        """A replica's token went away: (robot_id, request_id, epoch) of each request it was
        serving, to be failed now; all its requests' later messages are dropped."""
        with self._lock:
            self.live.discard(replica_id)
            serving = []
            for (robot_id, request_id), route in self._routes.items():
                if route.replica == replica_id and not route.gone:
                    route.gone = True
                    if not route.ended:
                        serving.append((robot_id, request_id, route.epoch))
                        route.ended = True
            return serving

    def route(self, robot_id: str, request_id: int,
              now: Optional[float] = None) -> Optional[str]:
        """The replica this request's messages go to: its own if it has one (None if that
        replica is gone), else the rendezvous choice among the live ones not paused for
        silence, remembered."""
        now = time.monotonic() if now is None else now
        with self._lock:
            found = self._routes.get((robot_id, request_id))
            if found is not None:
                return None if found.gone else found.replica
            replica = rendezvous(robot_id, request_id,
                                 [r for r in self.live if self.silent.get(r, now) <= now])
            if replica is not None:
                self._routes[(robot_id, request_id)] = Route(replica, sent=now)
                while len(self._routes) > self.max_requests:
                    self._routes.popitem(last=False)
            return replica

    def heard(self, robot_id: str, request_id: int, epoch: int, ended: bool,
              replica: Optional[str] = None) -> bool:
        """A message of the cloud for this request: its epoch, and whether it ends it. False
        (nothing recorded) when it comes from a replica that is not the request's."""
        with self._lock:
            route = self._routes.get((robot_id, request_id))
            if route is not None and replica is not None and replica != route.replica:
                return False
            if route is not None:
                route.epoch = epoch or route.epoch
                route.ended = route.ended or ended
                route.answered = True
                self.silent.pop(route.replica, None)
            return True

    def unanswered(self, now: Optional[float] = None) -> list[tuple[str, str, int, int]]:
        """(replica, robot_id, request_id, epoch) of each request that heard nothing from its
        replica within `answer_within_s`, to be failed now; its later messages are dropped and
        its replica is paused (module docstring)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            overdue = []
            for (robot_id, request_id), route in self._routes.items():
                if (not route.answered and not route.ended
                        and now - route.sent > self.answer_within_s):
                    route.ended = route.gone = True
                    overdue.append((route.replica, robot_id, request_id, route.epoch))
                    self.silent[route.replica] = now + RETRY_SILENT_AFTER * self.answer_within_s
            return overdue

    def end(self, robot_id: str, request_id: int) -> None:
        """The robot cancelled the request: its replica may leave without failing it."""
        with self._lock:
            route = self._routes.get((robot_id, request_id))
            if route is not None:
                route.ended = True

    def __contains__(self, request: tuple[str, int]) -> bool:
        with self._lock:
            return request in self._routes

    def __len__(self) -> int:
        return len(self._routes)
