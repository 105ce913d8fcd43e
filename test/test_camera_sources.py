"""Frame sources in process (pure, no ROS): freshness, shaping, OpenCV files, bag replay
pacing and content, the Go2 and simulator sources, and how bad frames are survived."""
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image

from spec_vlm_control.camera import (BagReplay, EndOfStream, Frame, FrameError, Paced, Shaper,
                                     SourceError, frame_is_fresh, run_capture)
from spec_vlm_control.camera.frame import check_image, decode_image, encode_jpeg
from spec_vlm_control.camera.go2 import Go2Source
from spec_vlm_control.camera.opencv import OpenCVSource
from spec_vlm_control.camera.simulated import SimSource
from spec_vlm_control.recording import Recorder, read_bag

SECOND = 1_000_000_000


def pattern(i, w=32, h=24):
    """A frame whose content says which one it is: colour level and a bar at column i."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 20 * i % 256, 255 - 20 * i % 256
    rgb[:, (3 * i) % w] = 255
    return rgb


def compressed(i, stamp_ns, w=32, h=24):
    msg = CompressedImage(format="jpeg", data=encode_jpeg(pattern(i, w, h), 95))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, SECOND)
    msg.header.frame_id = "recorded"
    return msg


def write_camera_bag(path, n=5, period_s=0.1, storage="mcap", topic="/camera/image/compressed",
                     start_ns=1_700_000_000 * SECOND, capture_lag_ns=20_000_000):
    """A bag of n JPEG frames `period_s` apart (log time); header stamps lag the log time by
    `capture_lag_ns`, as a capture stamp does. Returns the recorded messages."""
    messages = []
    with Recorder(path, storage=storage) as recorder:
        for i in range(n):
            log = start_ns + int(i * period_s * SECOND)
            msg = compressed(i, log - capture_lag_ns)
            recorder.write(topic, "sensor_msgs/msg/CompressedImage", serialize_message(msg), log)
            messages.append((log, msg))
    return messages


def clock():
    return time.time_ns()


# -- freshness and shaping ------------------------------------------------------------------

def test_frame_is_fresh_only_within_its_age_and_never_from_the_future():
    now = 50 * SECOND
    assert frame_is_fresh(now - SECOND // 2, now, 1.0)
    assert frame_is_fresh(now - SECOND, now, 1.0)
    assert not frame_is_fresh(now - SECOND - 1, now, 1.0)
    assert not frame_is_fresh(now + 1, now, 1.0)      # stamped ahead of this clock: age unknown
    assert not frame_is_fresh(0, now, 1.0)            # never stamped


def test_a_frame_from_the_future_is_fresh_only_within_the_clock_skew():
    now = 50 * SECOND
    assert frame_is_fresh(now + SECOND // 20, now, 1.0, max_skew_s=0.05)
    assert not frame_is_fresh(now + SECOND // 20 + 1, now, 1.0, max_skew_s=0.05)
    assert not frame_is_fresh(now + 5 * SECOND, now, 1.0, max_skew_s=0.05)
    assert not frame_is_fresh(-SECOND, now, 1.0, max_skew_s=0.05)


# -- what the edge accepts from image/compressed --------------------------------------------

def claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with the dimensions in its frame header (SOF0) replaced: a small file that
    claims a huge image."""
    at = jpeg.index(b"\xff\xc0") + 5
    return jpeg[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 4:]


def test_check_image_takes_whole_images_within_the_limits_and_refuses_the_rest():
    jpeg = encode_jpeg(pattern(3, 64, 48), 95)
    ok, png = cv2.imencode(".png", pattern(1, 64, 48))
    assert check_image(jpeg, 10**6, 64 * 48) == (64, 48)
    assert check_image(png.tobytes(), 10**6, 10**6) == (64, 48)
    refusals = {
        "truncated": (jpeg[: len(jpeg) // 2], 10**6, 10**6),
        "random bytes": (bytes(np.random.default_rng(0).integers(0, 256, 1000, np.uint8)),
                         10**6, 10**6),
        "empty": (b"", 10**6, 10**6),
        "too many bytes": (jpeg, len(jpeg) - 1, 10**6),
        "too many pixels": (jpeg, 10**6, 64 * 48 - 1),
        # 4 kB that claim 65535 x 65535 pixels: refused from the header, never decoded
        "huge claim": (claiming(jpeg, 65535, 65535), 10**6, 10**7),
        "not an image format the edge takes": (cv2.imencode(".bmp", pattern(1))[1].tobytes(),
                                               10**6, 10**6),
    }
    for case, (data, max_bytes, max_pixels) in refusals.items():
        with pytest.raises(FrameError):
            check_image(data, max_bytes, max_pixels)
            pytest.fail(f"{case}: accepted")


@settings(derandomize=True, max_examples=300, deadline=None)
@given(cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 4000),
                                                          st.integers(0, 255)), max_size=8))
def test_check_image_never_raises_anything_but_frame_error_on_mangled_jpegs(cut, flips):
    """Truncated and bit-flipped JPEGs: accepted only whole and within the limits, otherwise
    refused with FrameError, never another exception (which would end the edge)."""
    data = bytearray(FUZZ_JPEG[: len(FUZZ_JPEG) - cut])
    for at, value in flips:
        if data:
            data[at % len(data)] = value
    try:
        width, height = check_image(bytes(data), 10**6, 10**6)
    except FrameError:
        return
    assert width * height <= 10**6


FUZZ_JPEG = encode_jpeg(pattern(5, 48, 40), 90)


def test_a_jpeg_at_its_size_passes_through_and_resizing_reencodes():
    jpeg = encode_jpeg(pattern(3, 64, 48), 95)
    frame = Frame(7, jpeg=jpeg)
    out, rgb = Shaper().shape(frame, want_rgb=False)
    assert out is jpeg and rgb is None
    same_size, _ = Shaper(64, 48).shape(frame, want_rgb=False)
    assert same_size is jpeg
    small, rgb = Shaper(32, 24, jpeg_quality=80).shape(frame, want_rgb=True)
    assert rgb.shape == (24, 32, 3) and decode_image(small).shape == (24, 32, 3)
    pixels = pattern(5, 16, 16)
    encoded, raw = Shaper().shape(Frame(1, rgb=pixels), want_rgb=True)
    assert raw is pixels and np.abs(decode_image(encoded).astype(int) - pixels).mean() < 6


def test_undecodable_bytes_are_a_frame_error():
    with pytest.raises(FrameError):
        Shaper(8, 8).shape(Frame(1, jpeg=b"\xff\xd8 not really \xff\xd9"), want_rgb=False)
    with pytest.raises(FrameError):
        Frame(1)


# -- the capture loop and pacing -------------------------------------------------------------

class Scripted:
    """A source that plays a script of frames and errors, then ends."""

    def __init__(self, script):
        self.script = list(script)

    def next(self, stop):
        item = self.script.pop(0) if self.script else EndOfStream()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        pass


def test_capture_skips_bad_frames_and_stops_at_the_end():
    frames = [Frame(i, jpeg=b"x") for i in range(3)]
    delivered, reported = [], []
    run_capture(Scripted([frames[0], FrameError("torn"), frames[1], frames[2]]),
                delivered.append, reported.append, threading.Event())
    assert delivered == frames and [str(e) for e in reported] == ["torn"]
    with pytest.raises(SourceError):
        run_capture(Scripted([SourceError("unplugged")]), delivered.append, reported.append,
                    threading.Event())


@pytest.mark.timing
def test_paced_live_source_keeps_its_rate_and_stops_promptly():
    class Counter:
        n = 0

        def grab(self):
            self.n += 1
            return Frame(clock(), jpeg=b"x")

        def close(self):
            pass

    paced, stop = Paced(Counter(), rate_hz=50.0), threading.Event()
    t0 = time.monotonic()
    stamps = [paced.next(stop).stamp_ns for _ in range(11)]
    assert 0.15 < time.monotonic() - t0 < 0.6          # 10 periods of 20 ms, loosely
    assert stamps == sorted(stamps)
    stop.set()
    assert paced.next(stop) is None
    with pytest.raises(SourceError):
        Paced(Counter(), rate_hz=0)


# -- OpenCV -----------------------------------------------------------------------------------

def write_video(path, n, size=(32, 24)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened(), "cv2.VideoWriter cannot write MJPG here"
    for i in range(n):
        writer.write(cv2.cvtColor(pattern(i, *size), cv2.COLOR_RGB2BGR))
    writer.release()


def frame_index(rgb):
    """Which pattern() frame this is, from its colour (robust to JPEG loss)."""
    return int(round(float(rgb[..., 0].mean() - 255 / rgb.shape[1]) / 20))


def test_opencv_video_file_in_order_then_ends_or_loops(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, 4)
    source = OpenCVSource(str(video), clock)
    seen = []
    with pytest.raises(EndOfStream):
        while True:
            seen.append(source.grab())
    assert [frame_index(f.rgb) for f in seen] == [0, 1, 2, 3]
    assert [f.stamp_ns for f in seen] == sorted(f.stamp_ns for f in seen)
    looping = OpenCVSource(str(video), clock, loop=True)
    assert [frame_index(looping.grab().rgb) for _ in range(6)] == [0, 1, 2, 3, 0, 1]


def test_opencv_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(SourceError, match="no such video file"):
        OpenCVSource(str(tmp_path / "missing.mp4"), clock)
    junk = tmp_path / "junk.avi"
    junk.write_text("not a video")
    with pytest.raises(SourceError, match="could not open file"):
        OpenCVSource(str(junk), clock)
    with pytest.raises(SourceError, match="could not open device"):
        OpenCVSource("97", clock)


# -- bag replay -------------------------------------------------------------------------------

def replay_all(source, limit=100):
    stop, out = threading.Event(), []
    while len(out) < limit:
        try:
            out.append((time.monotonic(), source.next(stop)))
        except EndOfStream:
            return out
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_replay_keeps_content_order_and_recorded_stamps(tmp_path, storage):
    recorded = write_camera_bag(tmp_path / "bag", n=4, period_s=0.05, storage=storage)
    clocks = []
    source = BagReplay(tmp_path / "bag", clock, restamp=False, on_clock=clocks.append)
    frames = [f for _, f in replay_all(source)]
    assert [f.jpeg for f in frames] == [bytes(m.data) for _, m in recorded]
    assert [f.stamp_ns for f in frames] == [m.header.stamp.sec * SECOND + m.header.stamp.nanosec
                                            for _, m in recorded]
    assert clocks == [log for log, _ in recorded]


@pytest.mark.timing
def test_bag_replay_restamps_with_replay_time_and_scales_its_pace(tmp_path):
    write_camera_bag(tmp_path / "bag", n=5, period_s=0.1)
    before = clock()
    timed = replay_all(BagReplay(tmp_path / "bag", clock, rate=1.0))
    span_1x = timed[-1][0] - timed[0][0]
    assert all(f.stamp_ns >= before for _, f in timed)          # stamped when replayed
    timed = replay_all(BagReplay(tmp_path / "bag", clock, rate=4.0))
    span_4x = timed[-1][0] - timed[0][0]
    assert 0.3 < span_1x < 0.8 and 0.05 < span_4x < 0.3 and span_4x < span_1x / 2


def test_bag_replay_loops_and_survives_a_damaged_record(tmp_path):
    bag = tmp_path / "bag"
    with Recorder(bag) as recorder:
        for i in range(3):
            data = serialize_message(compressed(i, (i + 1) * SECOND))
            if i == 1:
                data = data[:12]   # a torn record
            recorder.write("/img", "sensor_msgs/msg/CompressedImage", data, i * 10_000_000)
    source, stop = BagReplay(bag, clock, loop=True, restamp=False), threading.Event()
    got = []
    for _ in range(6):
        try:
            got.append(source.next(stop).stamp_ns // SECOND)
        except FrameError:
            got.append("bad")
    assert got == [1, "bad", 3, 1, "bad", 3]


def test_raw_image_bags_replay_as_rgb_and_a_malformed_one_is_a_bad_frame(tmp_path):
    rgb = pattern(2, 6, 4)
    bag = tmp_path / "raw"
    variants = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1]}
    with Recorder(bag) as recorder:
        for k, (encoding, pixels) in enumerate(variants.items()):
            step = pixels.shape[1] * pixels.shape[2] + 2           # padded rows
            rows = np.zeros((4, step), np.uint8)
            rows[:, :pixels.shape[1] * pixels.shape[2]] = pixels.reshape(4, -1)
            msg = Image(height=4, width=6, encoding=encoding, step=step, data=rows.tobytes())
            recorder.write("/image_raw", "sensor_msgs/msg/Image", serialize_message(msg), k)
        short = Image(height=4, width=6, encoding="rgb8", step=18, data=bytes(20))
        recorder.write("/image_raw", "sensor_msgs/msg/Image", serialize_message(short), 3)
    source, stop = BagReplay(bag, clock), threading.Event()
    frames = [source.next(stop) for _ in variants]
    assert np.array_equal(frames[0].rgb, rgb) and np.array_equal(frames[1].rgb, rgb)
    assert np.array_equal(frames[2].rgb, np.repeat(rgb[..., :1], 3, axis=2))
    with pytest.raises(FrameError, match="unusable sensor_msgs/msg/Image"):
        source.next(stop)


def test_bag_sources_fail_clearly(tmp_path):
    with pytest.raises(SourceError, match="no such bag"):
        BagReplay(tmp_path / "missing", clock)
    bag = tmp_path / "two"
    with Recorder(bag) as recorder:
        for topic in ("/a/image/compressed", "/b/image/compressed"):
            recorder.write(topic, "sensor_msgs/msg/CompressedImage",
                           serialize_message(compressed(0, SECOND)), 1)
    with pytest.raises(SourceError, match="2 image topics"):
        BagReplay(bag, clock)
    with pytest.raises(SourceError, match="no image topic '/c'"):
        BagReplay(bag, clock, topic="/c")
    assert BagReplay(bag, clock, topic="/b/image/compressed").topic == "/b/image/compressed"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="cannot open"):
        BagReplay(tmp_path / "empty", clock)


# -- Go2 and the simulator --------------------------------------------------------------------

class VideoClientStandIn:
    def __init__(self, replies):
        self.replies = list(replies)

    def GetImageSample(self):
        return self.replies.pop(0)


def test_go2_frames_are_complete_jpegs_stamped_at_the_request():
    jpeg = encode_jpeg(pattern(1), 90)
    source = Go2Source(VideoClientStandIn([(0, list(jpeg)), (3104, None),
                                           (0, list(jpeg[:-40]))]), lambda: 42)
    frame = source.grab()
    assert frame.jpeg == jpeg and frame.stamp_ns == 42
    with pytest.raises(FrameError, match="returned 3104"):
        source.grab()
    with pytest.raises(FrameError, match="not a complete JPEG"):
        source.grab()


def test_sim_source_renders_the_world_it_is_shown():
    from dataclasses import replace

    from spec_vlm_control.sim.camera import EgoCamera
    from spec_vlm_control.sim.world import Pose, SceneObject, World

    world = World(objects=(SceneObject("red", "ball", 3.0, 3.0, 0.3),), pose=Pose(1.0, 3.0, 0.0))
    shown = [world, replace(world, pose=Pose(1.0, 3.0, 3.14))]
    source = SimSource(lambda: shown.pop(0), EgoCamera(32, 24), lambda: 5)
    facing, away = source.grab(), source.grab()
    assert facing.rgb.shape == (24, 32, 3) and facing.stamp_ns == 5
    assert red_pixels(facing.rgb) > 10 and red_pixels(away.rgb) == 0
    # One frame type: the render, stamped, with its ground truth (what the ball covers).
    assert isinstance(facing, Frame) and (facing.object_index == 0).sum() > 10
    assert facing.depth.shape == (24, 32) and (away.object_index == 0).sum() == 0


def red_pixels(rgb):
    r, g = rgb[..., 0].astype(int), rgb[..., 1].astype(int)
    return int(((r > 80) & (r > 2 * g)).sum())


# -- the committed recording of the simulated camera --------------------------------------------

SIM_BAG = Path(__file__).parent / "data" / "sim_camera"


def test_committed_sim_camera_bag_is_what_the_command_records(tmp_path):
    """test/data/sim_camera is `spec-vlm sim-camera-bag` output; if the renderer changes,
    re-record it with that command."""
    from spec_vlm_control.cli import main
    assert main(["sim-camera-bag", str(tmp_path / "fresh")]) == 0
    committed, fresh = list(read_bag(SIM_BAG)), list(read_bag(tmp_path / "fresh"))
    assert len(committed) == len(fresh) == 20
    assert [(m.topic, m.stamp_ns) for m in committed] == [(m.topic, m.stamp_ns) for m in fresh]
    for old, new in zip(committed, fresh):
        a, b = (decode_image(bytes(m.decode().data)).astype(int) for m in (old, new))
        assert a.shape == (64, 64, 3) and np.abs(a - b).mean() < 3
