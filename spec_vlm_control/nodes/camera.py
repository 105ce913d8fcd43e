"""`camera` node: the robot's camera (or a replay or simulation of it) as ROS images.

A thin adapter over spec_vlm_control.camera: parameters pick and configure a frame source,
a capture thread drives it, and each frame is published with its capture stamp.

Publishes   image/compressed (sensor_msgs/CompressedImage, JPEG), image_raw
            (sensor_msgs/Image rgb8, if publish_raw), both best effort with depth 1: a late
            frame is worthless, the next one replaces it. /clock (rosgraph_msgs/Clock, bag
            source with publish_clock: the recorded log time of each frame, just before it).
Subscribes  odom (nav_msgs/Odometry, source `sim` only: the pose the ego view is rendered from;
            a non-finite pose is ignored with a warning),
            sim/scene (std_msgs/UInt32, latched, source `sim` only: the scene to render, as
            the sim node switches to it)
Stamps      capture time in the node's clock; a bag replay keeps the recorded stamps with
            use_sim_time and stamps the replay time without it.
"""
from __future__ import annotations

import math
import threading
from dataclasses import replace

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

from spec_vlm_control.camera import (BagReplay, Frame, FrameError, Paced, Shaper, SourceError,
                                     run_capture)
from spec_vlm_control.nodes.common import OneOf, Range, declare_parameters, spin
from spec_vlm_control.nodes.convert import to_time
from spec_vlm_control.sim.scenes import DEFAULT_TASK_MIX, TASK_MIXES, SceneSampler

# name -> (default, description[, check]); config/camera.yaml lists the same keys.
PARAMETERS = {
    "source": ("opencv", "where frames come from: 'opencv' (device, file, URL), 'bag' "
                         "(rosbag2 replay), 'go2' (Unitree Go2 front camera), 'sim' "
                         "(simulated world's ego camera)", OneOf(("opencv", "bag", "go2", "sim"))),
    "rate_hz": (10.0, "frame rate of the live sources (opencv, go2, sim); a bag replays at "
                      "its recorded pace times bag_rate", Range(0.0, 1000.0, low_open=True)),
    "width": (0, "published width in pixels; 0 keeps the source's width", Range(0, 8192)),
    "height": (0, "published height in pixels; 0 keeps the source's height", Range(0, 8192)),
    "jpeg_quality": (90, "JPEG quality (1-100) when a frame has to be (re-)encoded; a JPEG "
                         "source at the published size is passed through unchanged",
                     Range(1, 100)),
    "publish_raw": (False, "also publish sensor_msgs/Image (rgb8) on image_raw"),
    "frame_id": ("camera_front", "header.frame_id of the published images"),
    "wait_for_subscriber": (False, "hold the first frame until image/compressed has a "
                                   "subscriber (a replay then starts at its beginning)"),
    "loop": (False, "start a video file or bag over when it ends"),
    "opencv_uri": ("0", "source 'opencv': a device index, a video file path or a stream URL "
                        "(rtsp://...)"),
    "bag_path": ("", "source 'bag': rosbag2 directory or .mcap/.db3 file"),
    "bag_topic": ("", "source 'bag': image topic to replay (CompressedImage or Image); empty "
                      "= the bag's only image topic"),
    "bag_rate": (1.0, "source 'bag': replay speed, 1.0 = as recorded, 2.0 = twice as fast",
                 Range(0.0, 1000.0, low_open=True)),
    "publish_clock": (False, "source 'bag': publish the recorded time on /clock (for nodes "
                             "running with use_sim_time)"),
    "go2_interface": ("eth0", "source 'go2': network interface that reaches the robot"),
    "go2_domain_id": (0, "source 'go2': the robot's DDS domain", Range(0, 232)),
    "go2_timeout_s": (1.0, "source 'go2': GetImageSample reply timeout",
                      Range(0.0, low_open=True)),
    "sim_seed": (0, "source 'sim': seed of the scene (the simulator must use the same one)",
                 Range(0)),
    "sim_task_mix": (DEFAULT_TASK_MIX, "source 'sim': task mix of the scene sampler (the "
                                       "simulator must use the same one)",
                     OneOf(tuple(TASK_MIXES))),
    "paused": (False, "live sources: grab, render and publish nothing (settable while "
                      "running: the demo's paused twins decide without the camera)"),
}

IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


class Pausable:
    """A live grabber that grabs nothing while `paused()`: no capture, render or publish."""

    def __init__(self, grabber, paused):
        self.grabber, self.paused = grabber, paused

    def grab(self):
        return None if self.paused() else self.grabber.grab()

    def close(self) -> None:
        self.grabber.close()


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera")
        self.p = declare_parameters(self, PARAMETERS)
        self.shaper = Shaper(self.p["width"], self.p["height"], self.p["jpeg_quality"])
        self.compressed = self.create_publisher(CompressedImage, "image/compressed", IMAGE_QOS)
        self.raw = (self.create_publisher(Image, "image_raw", IMAGE_QOS)
                    if self.p["publish_raw"] else None)
        self.clock_pub = None
        self.source = self._open_source()
        self.published = self.bad_frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture, name="camera-capture", daemon=True)
        self._thread.start()

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _open_source(self):
        kind, p = self.p["source"], self.p
        if kind == "bag":
            sim_time = self.get_parameter("use_sim_time").value
            if p["publish_clock"]:
                self.clock_pub = self.create_publisher(Clock, "/clock", 10)
            source = BagReplay(p["bag_path"], self.now_ns, p["bag_topic"], p["bag_rate"],
                               p["loop"], restamp=not sim_time,
                               on_clock=self._publish_clock if self.clock_pub else None)
            self.get_logger().info(f"camera: replaying {source.topic} of {source.path} at "
                                   f"x{p['bag_rate']:g}, stamps "
                                   f"{'of replay' if source.restamp else 'as recorded'}")
            return source
        if kind == "opencv":
            from spec_vlm_control.camera.opencv import OpenCVSource
            grabber = OpenCVSource(p["opencv_uri"], self.now_ns, p["loop"])
        elif kind == "go2":
            from spec_vlm_control.camera.go2 import Go2Source
            grabber = Go2Source.connect(p["go2_interface"], p["go2_domain_id"],
                                        p["go2_timeout_s"], self.now_ns)
        elif kind == "sim":
            grabber = self._sim_grabber()
        else:
            raise SourceError(f"unknown source {kind!r} (opencv, bag, go2 or sim)")
        self.get_logger().info(f"camera: source {kind} at {p['rate_hz']:g} Hz")
        return Paced(Pausable(grabber, lambda: self.get_parameter("paused").value),
                     p["rate_hz"])

    def _sim_grabber(self):
        from nav_msgs.msg import Odometry
        from std_msgs.msg import UInt32

        from spec_vlm_control import topics
        from spec_vlm_control.camera.simulated import SimSource
        from spec_vlm_control.nodes.common import LATCHED_QOS
        from spec_vlm_control.sim.camera import EgoCamera
        from spec_vlm_control.sim.world import Pose

        camera = EgoCamera(**{k: self.p[k] for k in ("width", "height") if self.p[k]})

        def load(seed: int) -> None:
            # One assignment, so the capture thread sees the old world or the new, never a mix.
            self._sim_world = SceneSampler(seed=seed, camera=camera,
                                           task_mix=self.p["sim_task_mix"]).sample().world

        def on_odom(msg: Odometry) -> None:
            q, pos = msg.pose.pose.orientation, msg.pose.pose.position
            if not all(map(math.isfinite, (pos.x, pos.y, q.x, q.y, q.z, q.w))):
                self.bad_odom += 1
                self.get_logger().warning(f"camera: odometry with a non-finite pose ignored "
                                          f"({self.bad_odom} so far)", throttle_duration_sec=1.0)
                return
            yaw = math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))
            self._sim_world = replace(self._sim_world, pose=Pose(pos.x, pos.y, yaw))

        load(self.p["sim_seed"])
        self.bad_odom = 0
        self.create_subscription(Odometry, topics.ODOM, on_odom, 10)
        self.create_subscription(UInt32, topics.SIM_SCENE, lambda m: load(m.data), LATCHED_QOS)
        return SimSource(lambda: self._sim_world, camera, self.now_ns)

    # -- the capture thread -------------------------------------------------------------------

    def _capture(self) -> None:
        try:
            if self.p["wait_for_subscriber"]:
                while self.compressed.get_subscription_count() == 0:
                    if self._stop.wait(0.02):
                        return
            run_capture(self.source, self.publish, self.report_bad_frame, self._stop)
            if not self._stop.is_set():
                self.get_logger().info(f"camera: end of stream after {self.published} frames")
        except SourceError as error:
            self.get_logger().error(f"camera: {error}")
        except Exception as error:  # the context was shut down under the thread
            if rclpy.ok(context=self.context):
                self.get_logger().error(f"camera: capture stopped: {error!r}")

    def publish(self, frame: Frame) -> None:
        try:
            jpeg, rgb = self.shaper.shape(frame, want_rgb=self.raw is not None)
        except FrameError as error:
            self.report_bad_frame(error)
            return
        msg = CompressedImage(format="jpeg", data=jpeg)
        msg.header.stamp, msg.header.frame_id = to_time(frame.stamp_ns), self.p["frame_id"]
        self.compressed.publish(msg)
        if self.raw is not None:
            h, w = rgb.shape[:2]
            self.raw.publish(Image(header=msg.header, height=h, width=w, encoding="rgb8",
                                   step=w * 3, data=rgb.tobytes()))
        self.published += 1

    def _publish_clock(self, stamp_ns: int) -> None:
        self.clock_pub.publish(Clock(clock=to_time(stamp_ns)))

    def report_bad_frame(self, error: FrameError) -> None:
        self.bad_frames += 1
        self.get_logger().warning(f"camera: bad frame skipped ({self.bad_frames} so far): "
                                  f"{error}", throttle_duration_sec=1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.source.close()


def main(args=None) -> int:
    try:
        return spin(CameraNode, args)
    except SourceError as error:  # raised while the node starts: nothing to publish yet
        rclpy.logging.get_logger("camera").fatal(str(error))
        rclpy.try_shutdown()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
