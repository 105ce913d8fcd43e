"""Cloud server: the cloud verifier (target VLM + exit heads) and the cloud side of the bridge.

    ros2 launch spec_vlm_control cloud.launch.py target_model:=/models/target \
        listen_endpoint:=tls/0.0.0.0:7447
Parameters come from config/{cloud,bridge_cloud}.yaml (see README). The verifier is
respawned if it dies, so robots recover without a restart of their own.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("spec_vlm_control"), "config")
    return LaunchDescription([
        DeclareLaunchArgument("target_model", description="target model folder, HF cache id or .gguf"),
        DeclareLaunchArgument("listen_endpoint", default_value="tcp/127.0.0.1:7447",
                              description="zenoh endpoint the robots' bridges connect to"),
        Node(package="spec_vlm_control", executable="cloud", name="cloud", respawn=True,
             parameters=[os.path.join(config, "cloud.yaml"),
                         {"model": LaunchConfiguration("target_model")}]),
        Node(package="spec_vlm_control", executable="bridge", name="bridge",
             parameters=[os.path.join(config, "bridge_cloud.yaml"),
                         {"listen": [LaunchConfiguration("listen_endpoint")]}]),
    ])
