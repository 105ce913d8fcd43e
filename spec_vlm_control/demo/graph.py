"""The demo's ROS graph (graphs.DEMO_GRAPH), as on a robot and a server: sim world, camera,
edge and controller in the robot's domain; the cloud in its own; the two joined only by the
bridge (zenoh on loopback) with an emulated link, each site's bridge in one process with its
model node, as the launch files run them. Every node is its installed executable
with its config/ YAML and the demo overlay (config/demo.yaml), the same files the launch
files read; only the models and the command line's choices are set here."""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import hops
from ..graphs import CLOUD, DEMO_GRAPH, ROBOT
from ..processes import CONFIG, EXECUTABLES, RosGraph, free_port
from .pair import PairFolder


@dataclass(frozen=True)
class GraphSettings:
    mode: str
    block_size: int
    rtt_ms: float
    first_seed: int
    dtype: str
    live_baseline: bool       # the edge also decodes each decision by cloud-only streaming


def settings(first_seed: int, mode: Optional[str] = None, block_size: Optional[int] = None,
             rtt_ms: Optional[float] = None) -> GraphSettings:
    """The command line's choices; those not given are the YAML's (config/demo.yaml over
    the nodes' own files)."""
    edge = DEMO_GRAPH.node("edge").yaml_parameters(CONFIG)
    bridge = DEMO_GRAPH.node("bridge", ROBOT).yaml_parameters(CONFIG)
    return GraphSettings(mode=mode or edge["mode"], block_size=block_size or edge["block_size"],
                         rtt_ms=2 * bridge["link_latency_ms"] if rtt_ms is None else rtt_ms,
                         first_seed=first_seed, dtype=edge["dtype"],
                         live_baseline=edge["live_baseline"])


def check_installed() -> None:
    missing = sorted({p.executable for p in DEMO_GRAPH.processes
                      if not (EXECUTABLES / p.executable).exists()})
    if missing or not all((CONFIG / f).exists() for p in DEMO_GRAPH.processes for f in p.files):
        raise FileNotFoundError(f"the node executables ({', '.join(missing) or 'config'}) are "
                                f"not installed under {EXECUTABLES.parent.parent}: run "
                                "`tools/dev setup` (or `tools/dev demo`)")


def domain_ids() -> tuple[int, int]:
    """Two ROS domains of this run's own (Fast DDS accepts 1..232 beside the default 0)."""
    robot, cloud = random.SystemRandom().sample(range(1, 233), 2)
    return robot, cloud


def start(stack: contextlib.ExitStack, pair: PairFolder, settings: GraphSettings,
          max_new_tokens: int, log_dir: Path, hop_dir: Path,
          timeout_s: float = 120.0) -> RosGraph:
    """Start every node, each recording the hop timeline into `hop_dir` (hops.py); return
    the robot's graph once all are ready. `stack` stops them."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {hops.ENV: str(hop_dir)}
    robot_id, cloud_id = domain_ids()
    sites = {ROBOT: stack.enter_context(contextlib.closing(
                 RosGraph(robot_id, log_dir, probe_name="demo_robot_probe"))),
             CLOUD: stack.enter_context(contextlib.closing(
                 RosGraph(cloud_id, log_dir, probe_name="demo_cloud_probe")))}
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    args = {"draft_model": str(pair.draft), "target_model": str(pair.target),
            "sim_seed": settings.first_seed, "sim_task_mix": pair.task_mix,
            "cloud_endpoint": endpoint,
            "listen_endpoint": endpoint, "exit_adapters": str(pair.exit_adapters or "")}
    params = {"cloud": {"dtype": settings.dtype, "exit_layers": pair.exit_layers or [-1]},
              "edge": {"dtype": settings.dtype, "mode": settings.mode,
                       "block_size": settings.block_size, "max_new_tokens": max_new_tokens},
              "bridge": {"link_latency_ms": settings.rtt_ms / 2}}
    nodes = [(sites[site], node) for site in (CLOUD, ROBOT)   # the cloud's bridge listens first
             for node in DEMO_GRAPH.sites[site]]
    # The edge and the cloud load their models while the other nodes start.
    loading = [(graph, graph.start_node(node, args, node.share(params), wait=False,
                                        env=env))
               for graph, node in nodes if "model" in node.params]
    for graph, node in nodes:
        if "model" not in node.params:
            graph.start_node(node, args, node.share(params), timeout=timeout_s,
                             env=env)
    for graph, process in loading:
        graph.wait_for(lambda p=process: "ready:" in p.log() or not p.alive(), timeout_s,
                       f"{process.name} to load its model")
        if not process.alive():
            raise RuntimeError(f"{process.name} exited while starting:\n{process.log()[-3000:]}")
    return sites[ROBOT]
