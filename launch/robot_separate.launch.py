"""Robot, as robot.launch.py, with the edge and the robot side of the bridge in one process
(robot_site: docs/latency.md):

    ros2 launch spec_vlm_control robot_site.launch.py draft_model:=/models/draft \
        cloud_endpoint:=tls/cloud.example.com:7447
Parameters come from config/{camera,edge,controller,bridge_robot}.yaml; the nodes are
those of spec_vlm_control.graphs.ROBOT_SITE_GRAPH.
"""
from spec_vlm_control.graphs import ROBOT_SITE_GRAPH, launch_description


def generate_launch_description():
    return launch_description(ROBOT_SITE_GRAPH)
