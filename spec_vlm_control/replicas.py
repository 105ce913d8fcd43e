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
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Optional

TOKENS = "spec_vlm/replicas"


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


class Assignments:
    """The live replicas and the sticky request -> replica table of one robot's bridge.
    Thread-safe: zenoh's callbacks and ROS's executor both call it."""

    def __init__(self, max_requests: int = 1024):
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.max_requests = max_requests
        self.live: set[str] = set()
        self._routes: OrderedDict[tuple[str, int], Route] = OrderedDict()
        self._lock = threading.Lock()

    def join(self, replica_id: str) -> bool:
        """A replica's token appeared; True when it was not live already."""
        with self._lock:
            new = replica_id not in self.live
            self.live.add(replica_id)
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

    def route(self, robot_id: str, request_id: int) -> Optional[str]:
        """The replica this request's messages go to: its own if it has one (None if that
        replica is gone), else the rendezvous choice among the live ones, remembered."""
        with self._lock:
            found = self._routes.get((robot_id, request_id))
            if found is not None:
                return None if found.gone else found.replica
            replica = rendezvous(robot_id, request_id, self.live)
            if replica is not None:
                self._routes[(robot_id, request_id)] = Route(replica)
                while len(self._routes) > self.max_requests:
                    self._routes.popitem(last=False)
            return replica

    def heard(self, robot_id: str, request_id: int, epoch: int, ended: bool) -> None:
        """A message of the cloud for this request: its epoch, and whether it ends it."""
        with self._lock:
            route = self._routes.get((robot_id, request_id))
            if route is not None:
                route.epoch = epoch or route.epoch
                route.ended = route.ended or ended

    def end(self, robot_id: str, request_id: int) -> None:
        """The robot cancelled the request: its replica may leave without failing it."""
        self.heard(robot_id, request_id, 0, True)

    def __len__(self) -> int:
        return len(self._routes)
