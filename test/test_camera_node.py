"""The camera node as a separate process: bag replay (.mcap and .db3) in order with the
recorded content at a scaled pace, simulated time with /clock, resizing and image_raw, an
OpenCV video file, and a clear failure on a bad source. Timing asserts are loose."""
import threading
import time

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

from spec_vlm_control.camera.frame import decode_image
from spec_vlm_control.recording import read_bag
from test_camera_sources import (SECOND, SIM_BAG, frame_index, write_camera_bag,
                                 write_video)


class Viewer:
    """The test's subscriber: what arrives on the camera topics, with arrival times."""

    def __init__(self, graph):
        self.graph, self.lock = graph, threading.Lock()
        self.images, self.raw, self.clock = [], [], []
        node = graph.node
        node.create_subscription(CompressedImage, "image/compressed", self._keep(self.images),
                                 qos_profile_sensor_data)
        node.create_subscription(Image, "image_raw", self._keep(self.raw), qos_profile_sensor_data)
        node.create_subscription(Clock, "/clock", self._keep(self.clock), 10)

    def _keep(self, into):
        def callback(msg):
            with self.lock:
                into.append((time.monotonic(), msg))
        return callback

    def wait_images(self, n, timeout=15.0):
        self.graph.wait_for(lambda: len(self.images) >= n, timeout, f"{n} images")
        with self.lock:
            return list(self.images)


def stamp_ns(msg):
    return msg.header.stamp.sec * SECOND + msg.header.stamp.nanosec


def replay(ros_graph, config_dir, bag, **params):
    viewer = Viewer(ros_graph)
    ros_graph.start("camera", params_file=config_dir / "camera.yaml",
                    params={"source": "bag", "bag_path": str(bag), "wait_for_subscriber": True,
                            **params})
    return viewer


def check_replay(ros_graph, config_dir, tmp_path, storage, rate):
    recorded = write_camera_bag(tmp_path / "bag", n=6, period_s=0.2, storage=storage)
    viewer = replay(ros_graph, config_dir, tmp_path / "bag", bag_rate=rate)
    before = ros_graph.node.get_clock().now().nanoseconds
    got = viewer.wait_images(len(recorded))
    assert [bytes(m.data) for _, m in got] == [bytes(m.data) for _, m in recorded]
    assert all(m.format == "jpeg" and m.header.frame_id == "camera_front" for _, m in got)
    # Without simulated time a replayed frame is stamped when replayed, so it is fresh now.
    assert all(stamp_ns(m) > before - 5 * SECOND for _, m in got)
    span, expected = got[-1][0] - got[0][0], 1.0 / rate
    assert 0.6 * expected < span < expected + 0.5, f"x{rate}: {span:.3f} s, not ~{expected} s"
    return span


def test_mcap_bag_replays_in_order_at_the_recorded_pace(ros_graph, config_dir, tmp_path):
    check_replay(ros_graph, config_dir, tmp_path, "mcap", rate=1.0)


def test_db3_bag_replays_in_order_four_times_faster(ros_graph, config_dir, tmp_path):
    check_replay(ros_graph, config_dir, tmp_path, "sqlite3", rate=4.0)


def test_sim_time_replay_keeps_recorded_stamps_and_publishes_the_clock(ros_graph, config_dir,
                                                                      tmp_path):
    recorded = write_camera_bag(tmp_path / "bag", n=4, period_s=0.05)
    viewer = replay(ros_graph, config_dir, tmp_path / "bag", use_sim_time=True,
                    publish_clock=True)
    got = viewer.wait_images(len(recorded))
    assert [stamp_ns(m) for _, m in got] == [stamp_ns(m) for _, m in recorded]
    ros_graph.wait_for(lambda: len(viewer.clock) >= len(recorded), 5.0, "/clock")
    clock = [c.clock.sec * SECOND + c.clock.nanosec for _, c in viewer.clock]
    assert clock == [log for log, _ in recorded]


def test_resized_and_raw_images(ros_graph, config_dir, tmp_path):
    write_camera_bag(tmp_path / "bag", n=3, period_s=0.05)
    viewer = replay(ros_graph, config_dir, tmp_path / "bag", width=16, height=12,
                    publish_raw=True, frame_id="front")
    got = viewer.wait_images(3)
    ros_graph.wait_for(lambda: len(viewer.raw) >= 3, 5.0, "image_raw")
    for (_, jpeg), (_, raw) in zip(got, viewer.raw):
        assert decode_image(bytes(jpeg.data)).shape == (12, 16, 3)
        assert (raw.width, raw.height, raw.encoding, raw.step) == (16, 12, "rgb8", 48)
        assert raw.header.stamp == jpeg.header.stamp and raw.header.frame_id == "front"
    pixels = np.frombuffer(bytes(viewer.raw[1][1].data), np.uint8).reshape(12, 16, 3)
    assert frame_index(pixels) == 1


def test_opencv_video_file_through_the_node(ros_graph, config_dir, tmp_path):
    write_video(tmp_path / "clip.avi", 5)
    viewer = Viewer(ros_graph)
    process = ros_graph.start("camera", params_file=config_dir / "camera.yaml", params={
        "source": "opencv", "opencv_uri": str(tmp_path / "clip.avi"), "rate_hz": 20.0,
        "wait_for_subscriber": True})
    got = viewer.wait_images(5)
    assert [frame_index(decode_image(bytes(m.data))) for _, m in got] == [0, 1, 2, 3, 4]
    ros_graph.wait_for(lambda: "end of stream after 5 frames" in process.log(), 5.0,
                       "the end of the video")
    assert process.alive()


def test_a_missing_bag_stops_the_node_with_a_clear_error(ros_graph, config_dir, tmp_path):
    process = ros_graph.start("camera", params_file=config_dir / "camera.yaml", wait=False,
                              params={"source": "bag", "bag_path": str(tmp_path / "nope")})
    assert process.popen.wait(20.0) == 1
    assert f"no such bag '{tmp_path / 'nope'}'" in process.log()


def test_committed_sim_camera_bag_replays_through_the_node(ros_graph, config_dir):
    recorded = [m.decode() for m in read_bag(SIM_BAG)]
    viewer = replay(ros_graph, config_dir, SIM_BAG, bag_rate=4.0)
    got = viewer.wait_images(len(recorded))
    assert [bytes(m.data) for _, m in got] == [bytes(m.data) for m in recorded]


def test_sim_source_renders_from_the_odometry_pose(ros_graph, config_dir):
    odom = ros_graph.node.create_publisher(Odometry, "odom", 10)
    viewer = Viewer(ros_graph)
    camera = ros_graph.start("camera", params_file=config_dir / "camera.yaml", params={
        "source": "sim", "sim_seed": 0, "width": 32, "height": 32, "rate_hz": 20.0})
    first = viewer.wait_images(2)[-1][1]
    assert decode_image(bytes(first.data)).shape == (32, 32, 3)
    # The robot turns round: the view changes once the camera has the new pose.
    turned = Odometry()
    turned.pose.pose.position.x, turned.pose.pose.position.y = 3.0, 3.0
    turned.pose.pose.orientation.z, turned.pose.pose.orientation.w = 1.0, 0.0
    ros_graph.wait_for(lambda: odom.get_subscription_count() > 0, 5.0, "odom subscription")
    odom.publish(turned)
    before = pixels(first)
    ros_graph.wait_for(lambda: np.abs(pixels(viewer.images[-1][1]) - before).mean() > 10, 5.0,
                       "a different view")
    # A non-finite pose is ignored: the view stays the turned one, frames keep coming.
    view, count = pixels(viewer.images[-1][1]), len(viewer.images)
    corrupt = Odometry()
    corrupt.pose.pose.position.x = float("nan")
    corrupt.pose.pose.orientation.w = float("inf")
    odom.publish(corrupt)
    ros_graph.wait_for(lambda: "non-finite pose ignored" in camera.log(), 5.0, "the warning")
    viewer.wait_images(count + 3)
    assert np.abs(pixels(viewer.images[-1][1]) - view).mean() < 1


def pixels(msg):
    return decode_image(bytes(msg.data)).astype(int)


def test_sim_source_switches_scene_with_the_simulator(ros_graph, config_dir):
    from std_msgs.msg import UInt32

    from spec_vlm_control import topics
    from spec_vlm_control.nodes.common import LATCHED_QOS
    from spec_vlm_control.sim.camera import EgoCamera
    from spec_vlm_control.sim.scenes import SceneSampler
    camera = EgoCamera(32, 32)
    scene_pub = ros_graph.node.create_publisher(UInt32, topics.SIM_SCENE, LATCHED_QOS)
    scene_pub.publish(UInt32(data=10_003))   # latched: a camera started later still gets it
    viewer = Viewer(ros_graph)
    ros_graph.start("camera", params_file=config_dir / "camera.yaml", params={
        "source": "sim", "sim_seed": 0, "width": 32, "height": 32, "rate_hz": 20.0})
    expected = camera.render(SceneSampler(seed=10_003, camera=camera).sample().world).rgb
    old = camera.render(SceneSampler(seed=0, camera=camera).sample().world).rgb
    assert np.abs(expected.astype(int) - old).mean() > 10
    ros_graph.wait_for(lambda: viewer.images and np.abs(
        pixels(viewer.images[-1][1]) - expected).mean() < 4, 5.0, "the new scene's view")
