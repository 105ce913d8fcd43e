"""Everything on one laptop: the simulated world, camera (sim source), edge, controller and
the cloud verifier, in one ROS domain (the LAN setup: no bridge needed).

    ros2 launch spec_vlm_control sim.launch.py draft_model:=/models/draft \
        target_model:=/models/target sim_seed:=3
    ros2 topic pub --once /instruction std_msgs/String "data: 'go to the red ball'"
Parameters come from config/{sim,camera,edge,controller,controller_sim,cloud}.yaml, with
config/demo.yaml over the edge's and the cloud's, so that the graph decodes as `spec-vlm demo`
does (with the demo pair: exit_adapters:=<demo pair>/target/exits). The nodes are those of
spec_vlm_control.graphs.SIM_GRAPH (see README).
"""
from spec_vlm_control.graphs import SIM_GRAPH, launch_description


def generate_launch_description():
    return launch_description(SIM_GRAPH)
