"""One more cloud replica of a fleet: the verifier and its bridge, a client of the fleet's
zenoh router (started by cloud_fleet.launch.py). Run one per host, or one per ROS domain.

    ROS_DOMAIN_ID=12 ros2 launch spec_vlm_control cloud_replica.launch.py \
        target_model:=/models/target router_endpoint:=tls/router.example.com:7447 replica_id:=b
Parameters come from config/{cloud,bridge_cloud}.yaml; the nodes are those of
spec_vlm_control.graphs.REPLICA_GRAPH (docs/scaleout.md). The replica's id must be in the
router's replicas list, with its credentials (docs/security.md, "A fleet").
"""
from spec_vlm_control.graphs import REPLICA_GRAPH, launch_description


def generate_launch_description():
    return launch_description(REPLICA_GRAPH)
