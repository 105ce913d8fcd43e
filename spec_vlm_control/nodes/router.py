"""`router` node: the zenoh router in front of a fleet of cloud replicas (docs/scaleout.md).

Robots' bridges (`fleet: true`) and the replicas' bridges (`replica_id`, client mode) connect
to it; it forwards the protocol keys and the replicas' liveliness tokens between them, and
drops a replica's token when the replica's session ends. It takes no ROS topic: the node is
only the package's way of running, configuring and stopping it (config/router.yaml),
security options as the bridge's listening side (docs/security.md).
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


class RouterNode(Node):
    def __init__(self):
        super().__init__("router")
        p = declare_parameters(self, PARAMETERS)
        settings = LinkSettings(mode="router", listen=[e for e in p["listen"] if e],
                                **{name: p[name] for name in PARAMETERS if name != "listen"})
        if not settings.listen:
            raise ConfigError("the router needs a listen endpoint, e.g. tls/0.0.0.0:7447")
        try:
            self.session = zenoh.open(settings.zenoh_config())
        except zenoh.ZError as exc:
            raise ConfigError(f"zenoh cannot start with this configuration: {exc}") from exc
        self.get_logger().info(f"zenoh router listening on {settings.listen}"
                               + (", user/password required" if settings.credentials_file
                                  else ""))

    def close(self) -> None:
        self.session.close()


def main(args=None) -> int:
    return spin(RouterNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
