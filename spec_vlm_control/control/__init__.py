"""From verified steps to safe locomotion commands (pure, no ROS): executor, safety, backends."""
