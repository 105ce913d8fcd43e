"""The bridge's part in a fleet of cloud replicas behind a zenoh router (docs/scaleout.md).

Robot side (`fleet: true`): each uplink message goes to its request's replica (replicas.py);
when a replica's token goes away, every request it was serving is answered at once, on this
robot's ROS domain, with DecodeError SESSION_GONE carrying the last cloud_epoch heard for the
request (0 if none): the edge fails SESSION_GONE from any epoch at once (core/edge.py), so the
agent's next request goes to a live replica. A request that hears nothing from its replica
within `replica_answer_s` is failed the same way and that replica is paused (replicas.py). A
new request while no replica is live (or all are paused) is answered with OVERLOADED. Cloud
side (`replica_id` set): the replica's token is held while its verifier subscribes to
requests.
"""
from __future__ import annotations

from typing import Callable, Optional

import spec_vlm_control.msg as protocol
from spec_vlm_control import topics
from spec_vlm_control.replica_link import ReplicaToken, ReplicaWatch
from spec_vlm_control.replicas import Assignments

Error = protocol.DecodeError


def ends(msg) -> bool:
    """Whether a downlink message ends its request (its replica may then leave freely)."""
    if isinstance(msg, Error):
        return msg.code != Error.CODE_UNKNOWN_SESSION   # that one answers an early block
    if isinstance(msg, protocol.Verdict):
        return msg.finished and msg.stage == protocol.Verdict.STAGE_FINAL
    return bool(msg.finished)


class RobotFleet:
    def __init__(self, node, session, max_requests: int, answer: Callable[[Error], None],
                 answer_within_s: float):
        self.log = node.get_logger()
        self.answer = answer
        self.assignments = Assignments(max_requests, answer_within_s)
        self.watch = ReplicaWatch(session, self.assignments, self._joined, self._gone)
        node.create_timer(min(0.5, answer_within_s / 4), self._check_answers)
        self.log.info(f"fleet: live replicas {sorted(self.assignments.live)}")

    def replica(self, topic: str, msg) -> Optional[str]:
        """The replica this uplink message goes to; None: it goes nowhere (answered, if a
        new request, with OVERLOADED)."""
        request = (msg.robot_id, msg.request_id)
        new = request not in self.assignments
        replica = self.assignments.route(*request)
        if isinstance(msg, protocol.Cancel):
            self.assignments.end(*request)
        if replica is None and topic == topics.REQUEST and new:
            self.answer(Error(robot_id=msg.robot_id, request_id=msg.request_id,
                              code=Error.CODE_OVERLOADED, reason="no live cloud replica"))
        return replica

    def heard(self, msg, replica: str) -> bool:
        """A downlink message from `replica` (its key's): False if that replica does not
        serve its request (a replica answering another's request: dropped)."""
        return self.assignments.heard(msg.robot_id, msg.request_id, msg.cloud_epoch,
                                      ends(msg), replica)

    def _check_answers(self) -> None:
        for replica_id, robot_id, request_id, epoch in self.assignments.unanswered():
            self.log.warning(f"replica {replica_id} did not answer request {request_id} of "
                             f"{robot_id} within {self.assignments.answer_within_s:g} s; "
                             "failing it and pausing the replica")
            self.answer(Error(robot_id=robot_id, request_id=request_id,
                              code=Error.CODE_SESSION_GONE, cloud_epoch=epoch,
                              reason=f"cloud replica {replica_id} did not answer"))

    def _joined(self, replica_id: str) -> None:
        self.log.info(f"replica joined: {replica_id}")

    def _gone(self, replica_id: str, serving: list[tuple[str, int, int]]) -> None:
        self.log.warning(f"replica left: {replica_id}; failing {len(serving)} request(s) "
                         "it was serving")
        for robot_id, request_id, epoch in serving:
            self.answer(Error(robot_id=robot_id, request_id=request_id,
                              code=Error.CODE_SESSION_GONE, cloud_epoch=epoch,
                              reason=f"cloud replica {replica_id} is gone"))


class ReplicaMembership:
    """A cloud replica's token, held while its verifier subscribes to requests (checked on
    a timer), so that a replica still loading its model is assigned nothing."""

    def __init__(self, node, session, replica_id: str, period_s: float = 0.5):
        self.node = node
        self.token = ReplicaToken(session, replica_id)
        node.create_timer(period_s, self._check)

    def _check(self) -> None:
        held = self.token.hold(self.node.count_subscribers(topics.REQUEST) > 0)
        if held is not None:
            self.node.get_logger().info(
                f"replica token {self.token.key} {'declared' if held else 'withdrawn'}")
