"""The simulated Go2 world: a room, its objects, the robot's kinematics and ego camera,
tasks with success criteria and a scripted expert that labels scenes (pure: no ROS)."""
