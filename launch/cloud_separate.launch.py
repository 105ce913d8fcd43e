"""Cloud server, as cloud.launch.py, with the verifier and the cloud side of the bridge in
one process (cloud_site: docs/latency.md), respawned together:

    ros2 launch spec_vlm_control cloud_site.launch.py target_model:=/models/target \
        listen_endpoint:=tls/0.0.0.0:7447
Parameters come from config/{cloud,bridge_cloud}.yaml; the nodes are those of
spec_vlm_control.graphs.CLOUD_SITE_GRAPH.
"""
from spec_vlm_control.graphs import CLOUD_SITE_GRAPH, launch_description


def generate_launch_description():
    return launch_description(CLOUD_SITE_GRAPH)
