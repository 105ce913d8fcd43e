"""The zenoh side of a fleet of cloud replicas (replicas.py, docs/scaleout.md): a replica's
liveliness token, and a robot's watch over the tokens. No ROS.

zenoh removes a token when its session ends: at once when the replica's process dies (its
socket closes), and after the replica's zenoh lease (`lease_ms` of its bridge) when its host
freezes or its network goes.
"""
from __future__ import annotations

from typing import Callable, Optional

import zenoh

from .replicas import TOKENS, Assignments, replica_of, token_key


class ReplicaToken:
    """A replica's membership: its token is held only while its verifier is up, so that no
    request is assigned to a replica that could not take it."""

    def __init__(self, session: zenoh.Session, replica_id: str):
        self.session = session
        self.key = token_key(replica_id)
        self._token: Optional[zenoh.LivelinessToken] = None

    def hold(self, ready: bool) -> Optional[bool]:
        """Declare or withdraw the token; the new state when it changed, else None."""
        if ready == (self._token is not None):
            return None
        if ready:
            self._token = self.session.liveliness().declare_token(self.key)
        else:
            self._token.undeclare()
            self._token = None
        return ready


class ReplicaWatch:
    """Keeps `assignments.live` equal to the replicas whose tokens are alive (those present
    when it starts included: zenoh delivers them first) and hands each replica that leaves,
    with the requests it was serving, to `gone`."""

    def __init__(self, session: zenoh.Session, assignments: Assignments,
                 joined: Callable[[str], None],
                 gone: Callable[[str, list[tuple[str, int, int]]], None]):
        self.assignments = assignments
        self.joined, self.gone = joined, gone
        self.subscriber = session.liveliness().declare_subscriber(
            f"{TOKENS}/*", self._changed, history=True)
        # And a query, answered before the bridge takes its first request: `history` replays
        # tokens asynchronously (measured: the query may miss a token that history then
        # brings a few ms later; until then new requests spread over fewer replicas).
        for reply in session.liveliness().get(f"{TOKENS}/*", timeout=2.0):
            if reply.ok is not None:
                self._join(str(reply.ok.key_expr))

    def _join(self, key_expr: str) -> None:
        replica_id = replica_of(key_expr)
        if self.assignments.join(replica_id):
            self.joined(replica_id)

    def _changed(self, sample: zenoh.Sample) -> None:
        try:
            if sample.kind == zenoh.SampleKind.PUT:
                self._join(str(sample.key_expr))
            else:
                replica_id = replica_of(str(sample.key_expr))
                self.gone(replica_id, self.assignments.leave(replica_id))
        except ValueError:
            pass                                # a token of no replica: not ours to read
