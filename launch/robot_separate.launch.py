"""Robot, as robot.launch.py, with every node in a process of its own (the edge and the
robot side of the bridge apart: a node restarted alone, one node's log or profile):

    ros2 launch spec_vlm_control robot_separate.launch.py draft_model:=/models/draft \
        cloud_endpoint:=tls/cloud.example.com:7447
Parameters come from config/{camera,edge,controller,bridge_robot}.yaml; the nodes are
those of spec_vlm_control.graphs.ROBOT_SEPARATE_GRAPH.
"""
from spec_vlm_control.graphs import ROBOT_SEPARATE_GRAPH, launch_description


def generate_launch_description():
    return launch_description(ROBOT_SEPARATE_GRAPH)
