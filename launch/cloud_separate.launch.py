"""Cloud, as cloud.launch.py, with the verifier and the cloud side of the bridge in
processes of their own; the verifier alone is respawned if it dies:

    ros2 launch spec_vlm_control cloud_separate.launch.py target_model:=/models/target \
        listen_endpoint:=tls/0.0.0.0:7447
Parameters come from config/{cloud,bridge_cloud}.yaml; the nodes are those of
spec_vlm_control.graphs.CLOUD_SEPARATE_GRAPH.
"""
from spec_vlm_control.graphs import CLOUD_SEPARATE_GRAPH, launch_description


def generate_launch_description():
    return launch_description(CLOUD_SEPARATE_GRAPH)
