"""The first host of a fleet of cloud replicas: the zenoh router the robots and replicas
connect to, and one replica (verifier + its bridge, client of the router).

    ros2 launch spec_vlm_control cloud_fleet.launch.py target_model:=/models/target \
        router_endpoint:=tls/0.0.0.0:7447 replica_id:=a
More replicas join with cloud_replica.launch.py (each host, or each ROS_DOMAIN_ID on one
host); robots use robot.launch.py with cloud_endpoint:=<router> fleet:=True. Parameters
come from config/{router,cloud,bridge_cloud}.yaml; the nodes are those of
spec_vlm_control.graphs.FLEET_GRAPH (docs/scaleout.md). On a real network set the router's
TLS and/or credentials_file and its robots and replicas lists (access control), and each
bridge's user / password_file or certificates (docs/security.md, "A fleet").
"""
from spec_vlm_control.graphs import FLEET_GRAPH, launch_description


def generate_launch_description():
    return launch_description(FLEET_GRAPH)
