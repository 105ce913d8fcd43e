"""`spec-vlm info`: what is installed, where, and whether the generated messages import."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys

PACKAGES = ("torch", "transformers", "gguf", "safetensors", "rosbags", "eclipse-zenoh",
            "unitree-sdk2py-dimos", "cyclonedds", "ros-rclpy")


def configure(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def collect() -> dict:
    import spec_vlm_control
    info = {"python": sys.version.split()[0], "prefix": sys.prefix,
            "spec_vlm_control": os.path.dirname(spec_vlm_control.__file__),
            "version": spec_vlm_control.__version__, "packages": {}}
    for name in PACKAGES:
        try:
            info["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            info["packages"][name] = None
    try:
        msg = importlib.import_module("spec_vlm_control.msg")
        info["messages"] = sorted(n for n in dir(msg) if n[:1].isupper())
    except ImportError as exc:
        info["messages"] = f"not importable: {exc} (run tools/dev setup)"
    info["rmw"] = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    return info


def run(args) -> int:
    info = collect()
    if args.json:
        import json
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k:24s} {v or 'MISSING'}")
        else:
            print(f"{key:26s} {value}")
    return 0 if isinstance(info["messages"], list) else 1
