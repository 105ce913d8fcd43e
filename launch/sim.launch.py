"""Everything on one laptop: the simulated world, camera (sim source), edge, controller and
the cloud verifier, in one ROS domain (the LAN setup: no bridge needed).

    ros2 launch spec_vlm_control sim.launch.py draft_model:=/models/draft \
        target_model:=/models/target sim_seed:=3
    ros2 topic pub --once /instruction std_msgs/String "data: 'go to the red ball'"
Parameters come from config/{sim,camera,edge,controller,controller_sim,cloud}.yaml (see README).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("spec_vlm_control"), "config")
    seed = LaunchConfiguration("sim_seed")
    return LaunchDescription([
        DeclareLaunchArgument("draft_model", description="draft model folder, HF cache id or .gguf"),
        DeclareLaunchArgument("target_model", description="target model folder, HF cache id or .gguf"),
        DeclareLaunchArgument("sim_seed", default_value="0", description="scene of the world"),
        Node(package="spec_vlm_control", executable="sim", name="sim",
             parameters=[os.path.join(config, "sim.yaml"), {"sim_seed": seed}]),
        Node(package="spec_vlm_control", executable="camera", name="camera",
             parameters=[os.path.join(config, "camera.yaml"),
                         {"source": "sim", "sim_seed": seed}]),
        Node(package="spec_vlm_control", executable="edge", name="edge",
             parameters=[os.path.join(config, "edge.yaml"),
                         {"model": LaunchConfiguration("draft_model")}]),
        Node(package="spec_vlm_control", executable="controller", name="controller",
             parameters=[os.path.join(config, "controller.yaml"),
                         os.path.join(config, "controller_sim.yaml")]),
        Node(package="spec_vlm_control", executable="cloud", name="cloud",
             parameters=[os.path.join(config, "cloud.yaml"),
                         {"model": LaunchConfiguration("target_model")}]),
    ])
