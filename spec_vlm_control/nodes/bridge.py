"""`bridge` node: carries the protocol topics between the robot's and the cloud's ROS domains
over zenoh, as serialized CDR bytes (never re-encoded).

side=robot  ROS -> zenoh: spec_vlm/request, draft, cancel (messages of `robot_id`)
            zenoh -> ROS: spec_vlm/verdict, committed, error for `robot_id`
side=cloud  ROS -> zenoh: verdict, committed, error, routed by each message's robot_id
            zenoh -> ROS: request, draft, cancel of every robot (of `robots` when set)
Several cloud replicas behind a zenoh router (docs/scaleout.md): a cloud bridge with
`replica_id` takes only the uplink keyed to it; a robot bridge with `fleet` sends each request
to a live replica by rendezvous hashing (nodes/bridge_fleet.py).
The outgoing direction can pass through the link emulator (latency, jitter, loss), so a
test or a demo on one machine sees the link between two sites.

What arrives from zenoh comes from another site: each payload is deserialized before it is
published, and one that does not decode, or whose robot_id is not the robot its key names
(or, on a robot, not this robot), is dropped, counted on /diagnostics and logged (throttled);
the bridge keeps forwarding.
"""
from __future__ import annotations

import time
from collections import Counter

import zenoh
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from std_msgs.msg import Header

import spec_vlm_control.msg as protocol
from spec_vlm_control import hops, topics
from spec_vlm_control.core.link import LinkEmulator
from spec_vlm_control.nodes.bridge_fleet import ReplicaMembership, RobotFleet
from spec_vlm_control.nodes.common import (PROTOCOL_QOS, ConfigError, OneOf, Range,
                                           declare_parameters, spin)
from spec_vlm_control.zenoh_link import DelayLine, LinkSettings, key, key_replica, parse_key

PARAMETERS = {
    "side": ("robot", "'robot' (forwards requests and drafts up) or 'cloud' (forwards "
                      "verdicts down, routed by robot_id)", OneOf(("robot", "cloud"))),
    "robot_id": ("go2", "robot whose traffic a robot-side bridge carries"),
    "robots": ([""], "cloud side: robots allowed on the link; when set, zenoh access control "
                     "lets each (known by user name or certificate common name = robot_id) "
                     "publish only its own up keys and receive only its own down keys"),
    "mode": ("peer", "zenoh mode: 'peer' or 'client' (connects to a zenoh router)",
             OneOf(("peer", "client"))),
    "connect": ([""], "zenoh endpoints to connect to, e.g. tls/cloud.example.com:7447"),
    "listen": ([""], "zenoh endpoints to listen on, e.g. tls/0.0.0.0:7447"),
    "allow_insecure": (False, "allow non-loopback endpoints without TLS (trusted LAN only)"),
    "tls_root_ca": ("", "PEM file of the certificate authority that signs the peer's "
                        "certificate"),
    "tls_certificate": ("", "PEM certificate of this side (the listening side's; the "
                            "connecting side's with tls_mutual)"),
    "tls_private_key": ("", "PEM private key of tls_certificate"),
    "tls_mutual": (True, "mutual TLS: the connecting side presents a certificate too and the "
                         "listening side requires it (false: only the listening side is "
                         "authenticated)"),
    "user": ("", "zenoh user name sent when connecting (user/password authentication)"),
    "password_file": ("", "file that holds this side's zenoh password"),
    "credentials_file": ("", "listening side: file of user:password lines it accepts"),
    "link_latency_ms": (0.0, "emulated one-way latency added to outgoing messages",
                        Range(0.0, 60000.0)),
    "link_jitter_ms": (0.0, "emulated extra delay, uniform in [0, jitter)", Range(0.0, 60000.0)),
    "link_loss": (0.0, "emulated probability of losing an outgoing message", Range(0.0, 1.0)),
    "link_seed": (0, "seed of the link emulator", Range(0, 2**32 - 1)),
    "lease_ms": (10000, "zenoh lease: the other sessions drop this one after hearing nothing "
                        "from it this long (a frozen replica leaves the fleet after it)",
                 Range(500, 600000)),
    "replica_id": ("", "cloud side, fleet behind a zenoh router: this replica's id (its "
                       "liveliness token spec_vlm/replicas/<replica_id>); empty: one cloud"),
    "fleet": (False, "robot side: the cloud is a fleet of replicas behind a zenoh router; "
                     "each request goes to a live replica (rendezvous hashing)"),
    "max_tracked_requests": (1024, "robot side, fleet: requests whose replica is remembered",
                             Range(1, 1000000)),
    "replica_answer_s": (5.0, "robot side, fleet: a request that hears nothing from its "
                              "replica this long fails (SESSION_GONE) and the replica takes no "
                              "new request for 10x this long", Range(0.1, 600.0)),
}


class BridgeNode(Node):
    def __init__(self):
        super().__init__("bridge")
        p = declare_parameters(self, PARAMETERS)
        self.side = p["side"]
        self.robot_id = p["robot_id"]
        key(self.robot_id, "up", "request")          # a robot_id that is no key chunk: refused
        robots = [r for r in p["robots"] if r]
        settings = LinkSettings(
            mode=p["mode"], connect=[e for e in p["connect"] if e],
            listen=[e for e in p["listen"] if e], allow_insecure=p["allow_insecure"],
            tls_root_ca=p["tls_root_ca"], tls_certificate=p["tls_certificate"],
            tls_private_key=p["tls_private_key"], tls_mutual=p["tls_mutual"], user=p["user"],
            password_file=p["password_file"], credentials_file=p["credentials_file"],
            lease_ms=p["lease_ms"],
            robots=robots if self.side == "cloud" and not p["replica_id"] else [])
        try:
            self.session = zenoh.open(settings.zenoh_config())
        except zenoh.ZError as exc:
            raise ConfigError(f"zenoh cannot start with this configuration: {exc}") from exc
        emulate = p["link_latency_ms"] > 0 or p["link_jitter_ms"] > 0 or p["link_loss"] > 0
        link = LinkEmulator(latency_s=p["link_latency_ms"] / 1000,
                            jitter_s=p["link_jitter_ms"] / 1000, loss=p["link_loss"],
                            seed=p["link_seed"]) if emulate else None
        self.outgoing = DelayLine(link, self._put)
        self.hops = hops.open_log(f"{self.side}_bridge")   # off unless SPEC_VLM_HOPS is set
        self.forwarded = {"up": 0, "down": 0}
        self.dropped = Counter()
        self._reported = Counter()
        self.diagnostics = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.create_timer(1.0, self._publish_diagnostics)

        out_topics, in_topics = ((topics.UPLINK, topics.DOWNLINK) if self.side == "robot"
                                 else (topics.DOWNLINK, topics.UPLINK))
        self.out_direction = "up" if self.side == "robot" else "down"
        for topic, type_name in out_topics.items():
            msg_type = getattr(protocol, type_name)
            self.create_subscription(
                msg_type, topic, lambda data, t=topic, m=msg_type: self._outgoing(t, m, data),
                PROTOCOL_QOS, raw=True)
        self.incoming = {
            topic.rsplit("/", 1)[-1]: (getattr(protocol, type_name), self.create_publisher(
                getattr(protocol, type_name), topic, PROTOCOL_QOS))
            for topic, type_name in in_topics.items()}
        in_direction = "down" if self.side == "robot" else "up"
        # Access control admits a subscription only to keys it allows: one per robot then.
        senders = [self.robot_id] if self.side == "robot" else robots or ["*"]
        replica = p["replica_id"] if self.side == "cloud" else ""
        self.membership = ReplicaMembership(self, self.session, replica) if replica else None
        self.replica_id = replica                # a fleet's keys name the replica both ways
        keyed = replica or ("*" if self.side == "robot" and p["fleet"] else "")
        patterns = [f"spec_vlm/{keyed + '/' if keyed else ''}{sender}/{in_direction}/*"
                    for sender in senders]
        self.fleet = (RobotFleet(self, self.session, p["max_tracked_requests"],
                                 self.incoming["error"][1].publish, p["replica_answer_s"])
                      if self.side == "robot" and p["fleet"] else None)
        self.subscribers = [self.session.declare_subscriber(pattern, self._incoming)
                            for pattern in patterns]
        self.get_logger().info(
            f"{self.side} bridge: {settings.mode} connect={settings.connect} "
            f"listen={settings.listen}, zenoh {patterns}"
            + (", access control on" if settings.robots else "")
            + (f", emulated link {p['link_latency_ms']} ms ± {p['link_jitter_ms']} ms, "
               f"loss {p['link_loss']}" if link else ""))

    def _outgoing(self, topic: str, msg_type, data: bytes) -> None:
        arrived = time.monotonic_ns()
        msg = deserialize_message(data, msg_type)
        self.hops.record("in", msg, arrived)
        robot_id = msg.robot_id
        if self.side == "robot" and robot_id != self.robot_id:
            return  # another robot's edge on this domain has its own bridge
        replica = self.fleet.replica(topic, msg) if self.fleet else self.replica_id
        if replica is None:
            self._drop("no live replica for its request", f"request {msg.request_id} {topic}")
            return
        try:
            key_expr = key(robot_id, self.out_direction, topic, replica)
        except ValueError:
            self._drop("robot_id not a key", f"{robot_id!r} on {topic}")
            return
        self.outgoing.send((key_expr, data, msg))

    def _put(self, item) -> None:
        key_expr, data, msg = item
        self.hops.record("out", msg)
        self.session.put(key_expr, data, express=True)    # sent at once, never batched
        self.forwarded[self.out_direction] += 1

    def _incoming(self, sample) -> None:
        """zenoh's callback: must return whatever arrives, and publish only what decodes as
        the protocol message its key names, for the robot its key names."""
        arrived = time.monotonic_ns()
        key_expr = str(sample.key_expr)
        try:
            robot_id, direction, topic = parse_key(key_expr)
            msg_type, publisher = self.incoming[topic]
        except (ValueError, KeyError):
            self._drop("unknown key", key_expr)
            return
        data = sample.payload.to_bytes()
        try:
            msg = deserialize_message(data, msg_type)
        except Exception as exc:  # rclpy raises its RMWError for bytes that are no such message
            self._drop("malformed", f"{len(data)} bytes on {key_expr}: {exc}")
            return
        if msg.robot_id != robot_id:
            self._drop("robot_id differs from key", f"{msg.robot_id!r} on {key_expr}")
            return
        if self.fleet and not self.fleet.heard(msg, key_replica(key_expr)):
            self._drop("not its request's replica", key_expr)
            return
        self.hops.record("in", msg, arrived)
        self.hops.record("out", msg)
        publisher.publish(data)
        self.forwarded[direction] += 1

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        self.get_logger().warning(f"dropped ({reason}, {self.dropped[reason]} so far): "
                                  f"{detail[:200]}", throttle_duration_sec=1.0)

    def _publish_diagnostics(self) -> None:
        dropped = Counter(self.dropped)
        if dropped == self._reported:
            return
        self._reported = dropped
        self.diagnostics.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()),
            status=[DiagnosticStatus(
                name="spec_vlm_control: bridge", level=DiagnosticStatus.WARN,
                message=f"dropped {sum(dropped.values())} messages from zenoh",
                values=[KeyValue(key=f"dropped: {reason}", value=str(n))
                        for reason, n in sorted(dropped.items())])]))

    def close(self) -> None:
        self.outgoing.close()
        self.session.close()


def main(args=None) -> int:
    return spin(BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
