"""`spec-vlm`: the package's one command-line program.

Each subcommand lives in `spec_vlm_control.commands.<module>` with two functions,
`configure(parser)` and `run(args) -> int`, and is imported only when it runs, so
`spec-vlm --help` stays fast and a broken optional dependency breaks only its command.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spec_vlm_control.commands.demo",
             "the whole graph closed loop in the simulated world: tasks, latencies, plot, bag"),
    "info": ("spec_vlm_control.commands.info", "print what is installed and where"),
    "bench": ("spec_vlm_control.commands.bench",
              "time per token of each decoding mode vs cloud-only streaming"),
    "sim-camera-bag": ("spec_vlm_control.commands.sim_camera_bag",
                       "record the simulated ego camera to a rosbag2 (MCAP)"),
    "train-demo": ("spec_vlm_control.commands.train_demo",
                   "train the demo VLM pair on the simulated world and write its model card"),
    "train-exits": ("spec_vlm_control.commands.train_exits",
                    "train a target's exit adapters by distillation from its last layer"),
    "eval-exits": ("spec_vlm_control.commands.eval_exits",
                   "report each exit layer's top-1 agreement with the last layer"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spec-vlm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(_module=module)
        importlib.import_module(module).configure(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
