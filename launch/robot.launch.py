"""Robot: camera, edge (draft VLM), controller, and the robot side of the bridge; the edge
and the bridge share one process (robot_site: docs/latency.md).

    ros2 launch spec_vlm_control robot.launch.py draft_model:=/models/draft \
        cloud_endpoint:=tls/cloud.example.com:7447
Parameters come from config/{camera,edge,controller,bridge_robot}.yaml; the nodes
are those of spec_vlm_control.graphs.ROBOT_GRAPH (see README).
"""
from spec_vlm_control.graphs import ROBOT_GRAPH, launch_description


def generate_launch_description():
    return launch_description(ROBOT_GRAPH)
