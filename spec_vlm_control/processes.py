"""Start the package's nodes as separate processes, the way a robot's launch file does.

Each node runs from its installed executable (lib/spec_vlm_control/<name>, where `ros2 run`
looks) with a YAML parameter file from config/ (the same files the launch files read), in
one ROS domain of its own with discovery kept on this machine. Readiness is checked with
rclpy's graph API, and every process is stopped at close, whatever happened before: the
test suite and `spec-vlm demo` share this code.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from .graphs import CLOUD_BRIDGE, ROBOT_BRIDGE, Arg, Colocated, NodeSpec

PREFIX = Path(sys.prefix)
EXECUTABLES = PREFIX / "lib" / "spec_vlm_control"
SHARE = PREFIX / "share" / "spec_vlm_control"
CONFIG = SHARE / "config"


def ros_env(domain_id: int, **extra: str) -> dict:
    """Environment of a node process: loopback-only discovery in the graph's own domain."""
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain_id),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class NodeProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def interrupt(self) -> None:
        """SIGINT (what Ctrl-C or launch sends): the node shuts down cleanly."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGINT, then SIGKILL if it does not exit in time."""
        if self.popen.poll() is None:
            self.interrupt()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """Abrupt death (a crashed process or a pulled cable), no clean shutdown."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@dataclass
class RosGraph:
    """One ROS world: its domain id, a probe node spinning in this process, and the node
    processes it started."""

    domain_id: int
    log_dir: Path
    cyclone_domain: Optional[int] = None   # a second DDS domain, for stand-ins of the robot's
                                           # own DDS services (unitree/go2 *_domain_id)
    probe_name: str = "test_probe"
    context: rclpy.Context = field(default_factory=rclpy.Context)
    processes: list[NodeProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Network rule: this process's own DDS participant stays on the machine too.
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.node = Node(self.probe_name, context=self.context)
        self._nodes = [self.node]
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_forever, daemon=True)
        self._spin.start()

    def add_node(self, node: Node) -> None:
        """Spin another node of this process (made in `self.context`) beside the probe."""
        self._nodes.append(node)
        self._executor.add_node(node)

    def _spin_forever(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # context shut down at teardown
            pass

    def start(self, executable: str, params_file: Optional[Path | list[Path]] = None,
              node_name: Optional[str] = None, params: Optional[dict] = None,
              domain_id: Optional[int] = None, wait: bool = True,
              timeout: float = 30.0, env: Optional[dict] = None) -> NodeProcess:
        """Start an installed node executable with its YAML file(s), later files overriding
        earlier ones; `params` override single parameters."""
        path = EXECUTABLES / executable
        if not path.exists():
            raise FileNotFoundError(f"{path} is not installed (run tools/dev setup)")
        cmd = [str(path), "--ros-args"]
        files = params_file if isinstance(params_file, list) else [params_file]
        for file in filter(None, files):
            cmd += ["--params-file", str(file)]
        if node_name:
            cmd += ["-r", f"__node:={node_name}"]
        for key, value in (params or {}).items():
            cmd += ["-p", f"{key}:={_param_literal(value)}"]
        name = node_name or executable
        log_path = self.log_dir / f"{name}-d{self.domain_id}-{len(self.processes)}.log"
        proc_env = ros_env(self.domain_id if domain_id is None else domain_id)
        proc_env.update(env or {})
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=proc_env,
                                     start_new_session=True)
        process = NodeProcess(name, popen, log_path)
        self.processes.append(process)
        if wait and (domain_id is None or domain_id == self.domain_id):
            self.wait_for_node(name, timeout, process)
        return process

    def start_node(self, node: NodeSpec | Colocated, args: Optional[dict] = None,
                   params: Optional[dict] = None, config_dir: Path = CONFIG,
                   **options) -> NodeProcess:
        """Start a process of the graph description (graphs.py) as its launch file would:
        its YAML files, its parameters with the launch arguments `args` filled in (else
        their defaults), then `params` (of co-located nodes: by executable, `node.share`)."""
        if isinstance(node, Colocated):
            return self._start_colocated(node, args, params or {}, config_dir, **options)
        return self.start(node.executable, [config_dir / f for f in node.files],
                          params={**node.parameters(self._filler(node, args)),
                                  **(params or {})}, **options)

    def _start_colocated(self, site: Colocated, args: Optional[dict], params: dict,
                         config_dir: Path, wait: bool = True, timeout: float = 30.0,
                         **options) -> NodeProcess:
        """Every parameter is set for its node only (`-p edge:mode:=plain`): co-located
        nodes may declare the same name (the edge's and the bridge's `mode`)."""
        process = self.start(site.executable, [config_dir / f for f in site.files],
                             params={f"{n.executable}:{name}": value for n in site.members
                                     for name, value in {
                                         **n.parameters(self._filler(n, args)),
                                         **params.get(n.executable, {})}.items()},
                             wait=False, **options)
        if wait:
            for node in site.members:
                self.wait_for_node(node.executable, timeout, process)
        return process

    @staticmethod
    def _filler(node: NodeSpec, args: Optional[dict]) -> Callable[[Arg], object]:
        def fill(arg: Arg):
            if arg.name in (args or {}):
                return args[arg.name]
            if arg.default is None:
                raise ValueError(f"{node.executable} needs the launch argument {arg.name}")
            return arg.default
        return fill

    def wait_for_node(self, name: str, timeout: float = 30.0,
                      process: Optional[NodeProcess] = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in self.node.get_node_names():
                return
            if process is not None and not process.alive():
                raise RuntimeError(f"{name} exited with {process.popen.returncode}:\n{process.log()}")
            time.sleep(0.05)
        log = process.log() if process else ""
        raise TimeoutError(f"node {name} did not appear within {timeout} s\n{log}")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.processes)
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}\n{logs}")
            time.sleep(0.01)

    def wait_for_log(self, process: NodeProcess, text: str, timeout: float = 60.0) -> None:
        """Readiness of a node that loads a model: its own log line, not the graph (a node
        killed a moment ago lingers in DDS discovery under the same name)."""
        self.wait_for(lambda: text in process.log() or not process.alive(), timeout,
                      f"{process.name} to log {text!r}")
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log()}")

    def close(self) -> None:
        for process in self.processes:      # all at once: shutting down takes each a while
            process.interrupt()
        for process in reversed(self.processes):
            process.stop()
        self._executor.shutdown(timeout_sec=1.0)
        for node in self._nodes:
            node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._spin.join(timeout=2.0)


def _param_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bridges(robot: RosGraph, cloud: RosGraph, config_dir: Path, latency_ms: float = 0.0,
                  robot_id: str = "go2", **robot_params) -> str:
    """A robot-side and a cloud-side bridge joined by zenoh on a fresh loopback port, each
    adding `latency_ms` one way; returns the endpoint."""
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    cloud.start_node(CLOUD_BRIDGE, {"listen_endpoint": endpoint},
                     {"link_latency_ms": latency_ms}, config_dir)
    robot.start_node(ROBOT_BRIDGE, {"cloud_endpoint": endpoint, "robot_id": robot_id},
                     {"link_latency_ms": latency_ms, **robot_params}, config_dir)
    return endpoint
