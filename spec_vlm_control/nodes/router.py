"""`router` node: the zenoh router in front of a fleet of cloud replicas (docs/scaleout.md).

Robots' bridges (`fleet: true`) and the replicas' bridges (`replica_id`, client mode) connect
to it; it forwards the protocol keys and the replicas' liveliness tokens between them, and
drops a replica's token when the replica's session ends. It takes no ROS topic: the node is
only the package's way of running, configuring and stopping it (config/router.yaml),
security options as the bridge's listening side (docs/security.md). With `robots` and
`replicas` listed, its zenoh access control binds each robot and each replica to its own keys
(zenoh_link.access_control, the rules of the cloud bridge's `robots` for one cloud).
"""
from __future__ import annotations

import zenoh
from rclpy.node import Node

from spec_vlm_control.nodes.bridge import PARAMETERS as BRIDGE
from spec_vlm_control.nodes.common import ConfigError, declare_parameters, spin
from spec_vlm_control.zenoh_link import LinkSettings

PARAMETERS = {name: BRIDGE[name] for name in (
    "listen", "allow_insecure", "tls_root_ca", "tls_certificate", "tls_private_key",
    "tls_mutual", "credentials_file", "lease_ms")}
PARAMETERS.update({
    "robots": ([""], "robots allowed in the fleet; with replicas, zenoh access control lets "
                     "each (known by user name or certificate common name = robot_id) put only "
                     "its own uplink and receive only its own down keys"),
    "replicas": ([""], "replica ids allowed in the fleet (with robots): each may receive only "
                       "the uplink keyed to it, put only the listed robots' down keys and hold "
                       "only its own token"),
})


class RouterNode(Node):
    def __init__(self):
        super().__init__("router")
        p = declare_parameters(self, PARAMETERS)
        listed = {name: [e for e in p[name] if e] for name in ("listen", "robots", "replicas")}
        settings = LinkSettings(mode="router", **listed,
                                **{name: p[name] for name in PARAMETERS if name not in listed})
        if not settings.listen:
            raise ConfigError("the router needs a listen endpoint, e.g. tls/0.0.0.0:7447")
        if bool(settings.robots) != bool(settings.replicas):
            raise ConfigError("the router's access control needs both robots and replicas")
        try:
            self.session = zenoh.open(settings.zenoh_config())
        except zenoh.ZError as exc:
            raise ConfigError(f"zenoh cannot start with this configuration: {exc}") from exc
        self.get_logger().info(f"zenoh router listening on {settings.listen}"
                               + (", user/password required" if settings.credentials_file
                                  else "")
                               + (f", access control for robots {settings.robots} and replicas "
                                  f"{settings.replicas}" if settings.robots else ""))

    def close(self) -> None:
        self.session.close()


def main(args=None) -> int:
    return spin(RouterNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
