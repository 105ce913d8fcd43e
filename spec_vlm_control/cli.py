"""`spec-vlm`: the package's one command-line program.

Each subcommand lives in `spec_vlm_control.commands.<module>` with two functions,
`configure(parser)` and `run(args) -> int`, and is imported only when it runs, so
`spec-vlm --help` stays fast and a broken optional dependency breaks only its command.

Errors in what the user gave (options, files, models: core.user_errors.UserError) end here
as one line on stderr and exit status 2, as argparse does for a bad command line; a bug keeps
its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .core.user_errors import USER_ERROR_STATUS, UserError, one_line

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spec_vlm_control.commands.demo",
             "the whole graph closed loop in the simulated world: tasks, latencies, plot, bag"),
    "info": ("spec_vlm_control.commands.info", "print what is installed and where"),
    "bench": ("spec_vlm_control.commands.bench",
              "time per token of each decoding mode vs cloud-only streaming"),
    "bench-link": ("spec_vlm_control.commands.link_bench",
                   "where the time of a live round trip goes: edge, bridges, cloud as "
                   "processes, hop timeline"),
    "fleet-bench": ("spec_vlm_control.commands.fleet_bench",
                    "how many robots one cloud serves: batched vs one session per pass"),
    "fleet-live": ("spec_vlm_control.commands.fleet_live",
                   "fleet-bench's live check: N robots on the real ROS graph, p50 beside "
                   "fleet-bench's"),
    "plan": ("spec_vlm_control.commands.plan", "predict and map which decoding mode wins where"),
    "sim-camera-bag": ("spec_vlm_control.commands.sim_camera_bag",
                       "record the simulated ego camera to a rosbag2 (MCAP)"),
    "train-demo": ("spec_vlm_control.commands.train_demo",
                   "train the demo VLM pair on the simulated world and write its model card"),
    "train-exits": ("spec_vlm_control.commands.train_exits",
                    "train a target's exit adapters by distillation from its last layer"),
    "eval-exits": ("spec_vlm_control.commands.eval_exits",
                   "report each exit layer's top-1 agreement with the last layer"),
}


EXIT_STATUS = ("exit status: 0 done; 1 the run failed; 2 a bad option, file or model "
               "(one line on stderr naming it)")


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block)."""

    def error(self, message: str):
        self.exit(USER_ERROR_STATUS, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spec-vlm", description=__doc__.splitlines()[0], epilog=EXIT_STATUS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_STATUS)
        cmd.set_defaults(_module=module)
        importlib.import_module(module).configure(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # transformers' weight-loading bars would bury a one-line error; the commands show their own
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as error:
        print(f"spec-vlm {args.command}: {one_line(error)}", file=sys.stderr)
        return USER_ERROR_STATUS


if __name__ == "__main__":
    sys.exit(main())
