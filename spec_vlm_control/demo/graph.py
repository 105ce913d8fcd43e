"""The demo's ROS graph, as on a robot and a server: sim world, camera, edge and controller
in the robot's domain; the cloud in its own; the two joined only by the bridge (zenoh on
loopback) with an emulated link. Every node is its installed executable with its config/
YAML, the same files the launch files read (the controller's sim overlay included); only
the models and the decoding settings are set here."""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path

from ..processes import CONFIG, EXECUTABLES, RosGraph, start_bridges
from .pair import PairFolder

NODES = ("sim", "camera", "edge", "controller", "cloud", "bridge")


@dataclass(frozen=True)
class GraphSettings:
    mode: str = "preemptive"
    block_size: int = 4
    rtt_ms: float = 50.0
    first_seed: int = 10_000
    dtype: str = "fp32"


CONTROLLER_FILES = [CONFIG / "controller.yaml", CONFIG / "controller_sim.yaml"]


def check_installed() -> None:
    missing = [n for n in NODES if not (EXECUTABLES / n).exists()]
    if missing or not (CONFIG / "edge.yaml").exists():
        raise FileNotFoundError(f"the node executables ({', '.join(missing) or 'config'}) are "
                                f"not installed under {EXECUTABLES.parent.parent}: run "
                                "`tools/dev setup` (or `tools/dev demo`)")


def domain_ids() -> tuple[int, int]:
    """Two ROS domains of this run's own (Fast DDS accepts 1..232 beside the default 0)."""
    robot, cloud = random.SystemRandom().sample(range(1, 233), 2)
    return robot, cloud


def start(stack: contextlib.ExitStack, pair: PairFolder, settings: GraphSettings,
          max_new_tokens: int, log_dir: Path, timeout_s: float = 120.0) -> RosGraph:
    """Start every node; return the robot's graph once all are ready. `stack` stops them."""
    log_dir.mkdir(parents=True, exist_ok=True)
    robot_id, cloud_id = domain_ids()
    robot = stack.enter_context(contextlib.closing(
        RosGraph(robot_id, log_dir, probe_name="demo_robot_probe")))
    cloud = stack.enter_context(contextlib.closing(
        RosGraph(cloud_id, log_dir, probe_name="demo_cloud_probe")))
    start_bridges(robot, cloud, CONFIG, latency_ms=settings.rtt_ms / 2)
    cloud_params = {"model": str(pair.target), "dtype": settings.dtype, "threads": 1,
                    "exit_layers": str(pair.exit_layers or [-1])}
    if pair.exit_adapters is not None:
        cloud_params["exit_adapters"] = str(pair.exit_adapters)
    loading = [cloud.start("cloud", CONFIG / "cloud.yaml", params=cloud_params, wait=False),
               robot.start("edge", CONFIG / "edge.yaml", wait=False, params={
                   "model": str(pair.draft), "dtype": settings.dtype, "threads": 1,
                   "mode": settings.mode, "block_size": settings.block_size,
                   "max_new_tokens": max_new_tokens})]
    seed = settings.first_seed
    robot.start("sim", CONFIG / "sim.yaml", params={"sim_seed": seed}, timeout=timeout_s)
    robot.start("camera", CONFIG / "camera.yaml", timeout=timeout_s,
                params={"source": "sim", "sim_seed": seed})
    robot.start("controller", CONTROLLER_FILES, timeout=timeout_s)
    for graph, process in zip((cloud, robot), loading):
        graph.wait_for(lambda p=process: "ready:" in p.log() or not p.alive(), timeout_s,
                       f"{process.name} to load its model")
        if not process.alive():
            raise RuntimeError(f"{process.name} exited while starting:\n{process.log()[-3000:]}")
    return robot
