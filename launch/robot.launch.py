"""Robot: camera, edge (draft VLM), controller, and the robot side of the bridge.

    ros2 launch spec_vlm_control robot.launch.py draft_model:=/models/draft \
        cloud_endpoint:=tls/cloud.example.com:7447
Parameters come from config/{camera,edge,controller,bridge_robot}.yaml (see README).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("spec_vlm_control"), "config")
    robot_id = LaunchConfiguration("robot_id")
    return LaunchDescription([
        DeclareLaunchArgument("draft_model", description="draft model folder, HF cache id or .gguf"),
        DeclareLaunchArgument("robot_id", default_value="go2"),
        DeclareLaunchArgument("cloud_endpoint", default_value="tcp/127.0.0.1:7447",
                              description="zenoh endpoint of the cloud's bridge"),
        Node(package="spec_vlm_control", executable="camera", name="camera",
             parameters=[os.path.join(config, "camera.yaml")]),
        Node(package="spec_vlm_control", executable="edge", name="edge",
             parameters=[os.path.join(config, "edge.yaml"),
                         {"model": LaunchConfiguration("draft_model"), "robot_id": robot_id}]),
        Node(package="spec_vlm_control", executable="controller", name="controller",
             parameters=[os.path.join(config, "controller.yaml")]),
        Node(package="spec_vlm_control", executable="bridge", name="bridge",
             parameters=[os.path.join(config, "bridge_robot.yaml"),
                         {"robot_id": robot_id,
                          "connect": [LaunchConfiguration("cloud_endpoint")]}]),
    ])
