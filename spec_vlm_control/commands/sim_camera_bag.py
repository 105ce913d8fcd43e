"""`spec-vlm sim-camera-bag`: record the simulated ego camera to a rosbag2, the recorded
camera that replay tests and demos use without a robot (test/data/sim_camera holds one)."""
from __future__ import annotations

from pathlib import Path

from ..core.user_errors import UserError
from . import count, number

TOPIC = "/camera/image/compressed"
START_NS = 1_750_000_000 * 1_000_000_000  # a fixed epoch, so the same options give the same bag


def configure(parser) -> None:
    parser.add_argument("out", type=Path, help="bag directory to create (must not exist)")
    parser.add_argument("--seed", type=number(int, 0), default=0, help="scene seed (SceneSampler)")
    parser.add_argument("--frames", type=count(), default=20, help="number of frames")
    parser.add_argument("--rate", type=number(float, 0.0, low_open=True), default=10.0,
                        help="frames per second")
    parser.add_argument("--size", type=count(8), default=64, help="image width and height")
    parser.add_argument("--quality", type=number(int, 1, 100), default=90, help="JPEG quality")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")


def run(args) -> int:
    if args.out.exists():
        raise UserError(f"{args.out} already exists")
    import numpy as np
    from tqdm import tqdm

    from spec_vlm_control.camera.frame import encode_jpeg
    from spec_vlm_control.camera.simulated import turning_frames
    from spec_vlm_control.recording import Recorder, package_typestore
    from spec_vlm_control.sim.camera import EgoCamera
    from spec_vlm_control.sim.scenes import SceneSampler

    camera = EgoCamera(args.size, args.size)
    world = SceneSampler(seed=args.seed, camera=camera).sample().world
    types = package_typestore().types
    Image, Header, Time = (types[f"{p}/msg/{n}"] for p, n in (
        ("sensor_msgs", "CompressedImage"), ("std_msgs", "Header"), ("builtin_interfaces", "Time")))
    frames = turning_frames(world, camera, args.frames, args.rate, start_ns=START_NS)
    with Recorder(args.out, storage=args.storage) as recorder:
        for frame in tqdm(frames, total=args.frames, desc="rendering", unit="frame"):
            sec, nanosec = divmod(frame.stamp_ns, 1_000_000_000)
            header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="camera_front")
            jpeg = np.frombuffer(encode_jpeg(frame.rgb, args.quality), np.uint8)
            msg = Image(header=header, format="jpeg", data=jpeg)
            recorder.write(TOPIC, "sensor_msgs/msg/CompressedImage", msg, frame.stamp_ns)
    print(f"{args.frames} frames of {args.size}x{args.size} (seed {args.seed}) on {TOPIC} "
          f"-> {args.out}")
    return 0
