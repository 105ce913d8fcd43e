"""Cloud server: the cloud verifier (target VLM + exit heads) and the cloud side of the bridge,
in one process (cloud_site: docs/latency.md).

    ros2 launch spec_vlm_control cloud.launch.py target_model:=/models/target \
        listen_endpoint:=tls/0.0.0.0:7447
Parameters come from config/{cloud,bridge_cloud}.yaml; the nodes
are those of spec_vlm_control.graphs.CLOUD_GRAPH (see README). The process is
respawned if it dies, so robots recover without a restart of their own.
"""
from spec_vlm_control.graphs import CLOUD_GRAPH, launch_description


def generate_launch_description():
    return launch_description(CLOUD_GRAPH)
