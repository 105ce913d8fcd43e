"""`bridge` node: carries the protocol topics between the robot's and the cloud's ROS domains
over zenoh, as serialized CDR bytes (never re-encoded).

side=robot  ROS -> zenoh: spec_vlm/request, draft, cancel (messages of `robot_id`)
            zenoh -> ROS: spec_vlm/verdict, committed, error for `robot_id`
side=cloud  ROS -> zenoh: verdict, committed, error, routed by each message's robot_id
            zenoh -> ROS: request, draft, cancel of every robot
The outgoing direction can pass through the link emulator (latency, jitter, loss), so a
test or a demo on one machine sees the link between two sites.
"""
from __future__ import annotations

from rclpy.node import Node
from rclpy.serialization import deserialize_message

import spec_vlm_control.msg as protocol
from spec_vlm_control import topics
from spec_vlm_control.core.link import LinkEmulator
from spec_vlm_control.nodes.common import PROTOCOL_QOS, declare_parameters, spin
from spec_vlm_control.zenoh_link import DelayLine, LinkSettings, key, parse_key

PARAMETERS = {
    "side": ("robot", "'robot' (forwards requests and drafts up) or 'cloud' (forwards "
                      "verdicts down, routed by robot_id)"),
    "robot_id": ("go2", "robot whose traffic a robot-side bridge carries"),
    "mode": ("peer", "zenoh mode: 'peer' or 'client' (connects to a zenoh router)"),
    "connect": ([""], "zenoh endpoints to connect to, e.g. tls/cloud.example.com:7447"),
    "listen": ([""], "zenoh endpoints to listen on, e.g. tls/0.0.0.0:7447"),
    "allow_insecure": (False, "allow non-loopback endpoints without TLS (trusted LAN only)"),
    "tls_root_ca": ("", "PEM file of the certificate authority that signs the peer"),
    "tls_certificate": ("", "PEM certificate of this side (mutual TLS)"),
    "tls_private_key": ("", "PEM private key of tls_certificate"),
    "user": ("", "zenoh user name (user/password authentication)"),
    "password_file": ("", "file that holds the zenoh password"),
    "link_latency_ms": (0.0, "emulated one-way latency added to outgoing messages"),
    "link_jitter_ms": (0.0, "emulated extra delay, uniform in [0, jitter)"),
    "link_loss": (0.0, "emulated probability of losing an outgoing message"),
    "link_seed": (0, "seed of the link emulator"),
}


class BridgeNode(Node):
    def __init__(self):
        super().__init__("bridge")
        p = declare_parameters(self, PARAMETERS)
        self.side = p["side"]
        if self.side not in ("robot", "cloud"):
            raise ValueError(f"side must be 'robot' or 'cloud', not {self.side!r}")
        settings = LinkSettings(
            mode=p["mode"], connect=[e for e in p["connect"] if e],
            listen=[e for e in p["listen"] if e], allow_insecure=p["allow_insecure"],
            tls_root_ca=p["tls_root_ca"], tls_certificate=p["tls_certificate"],
            tls_private_key=p["tls_private_key"], user=p["user"],
            password_file=p["password_file"])
        import zenoh
        self.session = zenoh.open(settings.zenoh_config())
        emulate = p["link_latency_ms"] > 0 or p["link_jitter_ms"] > 0 or p["link_loss"] > 0
        link = LinkEmulator(latency_s=p["link_latency_ms"] / 1000,
                            jitter_s=p["link_jitter_ms"] / 1000, loss=p["link_loss"],
                            seed=p["link_seed"]) if emulate else None
        self.outgoing = DelayLine(link, self._put)
        self.forwarded = {"up": 0, "down": 0}

        robot_id = p["robot_id"]
        out_topics, in_topics = ((topics.UPLINK, topics.DOWNLINK) if self.side == "robot"
                                 else (topics.DOWNLINK, topics.UPLINK))
        self.out_direction = "up" if self.side == "robot" else "down"
        for topic, type_name in out_topics.items():
            msg_type = getattr(protocol, type_name)
            self.create_subscription(
                msg_type, topic, lambda data, t=topic, m=msg_type: self._outgoing(t, m, data),
                PROTOCOL_QOS, raw=True)
        self.publishers_by_name = {
            topic.rsplit("/", 1)[-1]: self.create_publisher(getattr(protocol, type_name),
                                                            topic, PROTOCOL_QOS)
            for topic, type_name in in_topics.items()}
        in_direction = "down" if self.side == "robot" else "up"
        pattern = (f"spec_vlm/{robot_id}/{in_direction}/*" if self.side == "robot"
                   else f"spec_vlm/*/{in_direction}/*")
        self.subscriber = self.session.declare_subscriber(pattern, self._incoming)
        self.robot_id = robot_id
        self.get_logger().info(
            f"{self.side} bridge: {settings.mode} connect={settings.connect} "
            f"listen={settings.listen}, zenoh {pattern}"
            + (f", emulated link {p['link_latency_ms']} ms ± {p['link_jitter_ms']} ms, "
               f"loss {p['link_loss']}" if link else ""))

    def _outgoing(self, topic: str, msg_type, data: bytes) -> None:
        robot_id = deserialize_message(data, msg_type).robot_id
        if self.side == "robot" and robot_id != self.robot_id:
            return  # another robot's edge on this domain has its own bridge
        self.outgoing.send((key(robot_id, self.out_direction, topic), data))

    def _put(self, item) -> None:
        key_expr, data = item
        self.session.put(key_expr, data)
        self.forwarded[self.out_direction] += 1

    def _incoming(self, sample) -> None:
        _, direction, topic = parse_key(sample.key_expr)
        publisher = self.publishers_by_name.get(topic)
        if publisher is None:
            self.get_logger().warning(f"ignoring unknown protocol topic {sample.key_expr}")
            return
        publisher.publish(sample.payload.to_bytes())
        self.forwarded[direction] += 1

    def close(self) -> None:
        self.outgoing.close()
        self.session.close()


def main(args=None) -> int:
    return spin(BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
