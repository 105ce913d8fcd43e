"""pip install path (the spec-vlm program and the pure-Python core).

On a robot or server, build with colcon instead: CMakeLists.txt generates the ROS
messages (spec_vlm_control.msg) and installs the node executables where `ros2 run` looks.
Metadata and console scripts live in setup.cfg, read by both paths.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=("spec_vlm_control", "spec_vlm_control.*")),
    data_files=[("share/ament_index/resource_index/packages", ["resource/spec_vlm_control"]),
                ("share/spec_vlm_control", ["package.xml"])],
    install_requires=[line for line in open("requirements.txt").read().splitlines()
                      if line.strip() and not line.startswith("#")],
)
