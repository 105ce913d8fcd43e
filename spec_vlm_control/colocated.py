"""`robot_site` and `cloud_site`: a site's model node and its bridge in one process.

The edge (or the cloud) and the bridge stay separate nodes, each with its own parameters
(config/*.yaml sections `edge`/`cloud` and `bridge`; on the command line
`-p edge:mode:=plain -p bridge:mode:=peer`, since both declare `mode`), but share one rclpy
context and one executor. The protocol topics between them then never leave the process:
Fast DDS delivers a publication to a reader of the same process by calling it directly
(intra-process delivery, on by default), without the shared-memory transport, the wake-up
of another process or its acknowledgement. `spec-vlm bench-link --layouts` measures what
that saves (docs/latency.md). The nodes' own executables still run them apart.
The bridge is built first: once the model node logs `ready:`, the site is up. A site
process runs rclpy's EventsExecutor unless SPEC_VLM_EXECUTOR says otherwise.
"""
from __future__ import annotations

from .nodes.common import spin_nodes

# Measured fastest together (docs/latency.md); with the MultiThreadedExecutor a co-located
# site was slower than four processes. SPEC_VLM_EXECUTOR=multi overrides it.
SITE_EXECUTOR = "events"


def robot_main(args=None) -> int:
    from .nodes.bridge import BridgeNode
    from .nodes.edge import EdgeNode
    return spin_nodes([BridgeNode, EdgeNode], args, executor=SITE_EXECUTOR)


def cloud_main(args=None) -> int:
    from .nodes.bridge import BridgeNode
    from .nodes.cloud import CloudNode
    return spin_nodes([BridgeNode, CloudNode], args, executor=SITE_EXECUTOR)
