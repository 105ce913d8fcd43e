"""Camera frames for decisions: sources (OpenCV, rosbag2 replay, Go2 VideoClient, the
simulator), shaping to the published size, and the freshness rule (pure: no ROS)."""
from .bag import BagReplay
from .frame import Frame, FrameError, Shaper, frame_is_fresh
from .source import EndOfStream, Paced, SourceError, run_capture

__all__ = ["BagReplay", "EndOfStream", "Frame", "FrameError", "Paced", "Shaper", "SourceError",
           "frame_is_fresh", "run_capture"]
