"""The package's ROS graphs, described once: which nodes run at which site, from which
executable, reading which config/ YAML files (later files override earlier ones), with which
parameters set on top. The launch files build their Node actions from these descriptions
(`launch_description`), `spec-vlm demo` and the graph tests start their node processes from
the same ones (processes.RosGraph.start_node). Pure Python: `launch` is imported only when
a launch file asks for its actions."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

PACKAGE = "spec_vlm_control"
ROBOT, CLOUD = "robot", "cloud"     # sites: each its own ROS domain, joined by the bridges
DEMO_OVERLAY = "demo.yaml"          # what `spec-vlm demo` (and sim.launch.py) set differently


@dataclass(frozen=True)
class Arg:
    """A launch argument: a parameter value given on the command line (or by the demo and
    the tests, which fill it in the same way)."""
    name: str
    description: str
    default: Optional[str] = None


DRAFT_MODEL = Arg("draft_model", "draft model folder, HF cache id or .gguf")
TARGET_MODEL = Arg("target_model", "target model folder, HF cache id or .gguf")
ROBOT_ID = Arg("robot_id", "this robot's id at the cloud (and its bridge's)", "go2")
CLOUD_ENDPOINT = Arg("cloud_endpoint", "zenoh endpoint of the cloud's bridge",
                     "tcp/127.0.0.1:7447")
LISTEN_ENDPOINT = Arg("listen_endpoint", "zenoh endpoint the robots' bridges connect to",
                      "tcp/127.0.0.1:7447")
ROUTER_ENDPOINT = Arg("router_endpoint", "zenoh endpoint of the fleet's router (where it "
                                         "listens, where the replicas connect)",
                      "tcp/127.0.0.1:7447")
REPLICA_ID = Arg("replica_id", "this cloud replica's id in the fleet (one per replica)")
FLEET = Arg("fleet", "True: cloud_endpoint is the router of a fleet of cloud replicas "
                     "(docs/scaleout.md)", "False")
SIM_SEED = Arg("sim_seed", "scene of the simulated world", "0")
SIM_TASK_MIX = Arg("sim_task_mix", "task mix the simulated scenes are sampled from (the "
                                   "model pair's pair.json task_mix)", "one_goal")
EXIT_ADAPTERS = Arg("exit_adapters", "folder of the target's trained exit adapters "
                                     "(the demo pair's: target/exits)", "")


@dataclass(frozen=True)
class NodeSpec:
    """One node: named as its executable, its YAML files from config/, and `params` set on
    top (a value, an Arg, or a list of them)."""
    executable: str
    files: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    respawn: bool = False

    def parameters(self, fill: Callable[[Arg], Any]) -> dict:
        """`params` with every Arg replaced by `fill(arg)`."""
        def value(v):
            if isinstance(v, Arg):
                return fill(v)
            return [value(x) for x in v] if isinstance(v, list) else v
        return {name: value(v) for name, v in self.params.items()}

    def arguments(self) -> list[Arg]:
        found = []
        for v in self.params.values():
            found += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, Arg)]
        return found

    @property
    def members(self) -> tuple["NodeSpec", ...]:
        return (self,)

    def share(self, table: Mapping[str, dict]) -> Optional[dict]:
        """This node's entry of a table by executable (the parameters a caller sets)."""
        return table.get(self.executable)

    def reading(self, *files: str, **params) -> "NodeSpec":
        """This node with more YAML files after its own and more parameters set."""
        return replace(self, files=self.files + files, params={**self.params, **params})

    def yaml_parameters(self, config_dir: Path) -> dict:
        """The parameters its YAML files give it, later files overriding earlier ones."""
        import yaml
        merged = {}
        for name in self.files:
            sections = yaml.safe_load((Path(config_dir) / name).read_text()) or {}
            merged.update(sections.get(self.executable, {}).get("ros__parameters", {}))
        return merged


@dataclass(frozen=True)
class Colocated:
    """Nodes of one site run in one process (colocated.py: one rclpy context and executor,
    the protocol topics between them delivered within the process; docs/latency.md). Each
    keeps its node name, its YAML sections and its parameters."""
    executable: str
    members: tuple[NodeSpec, ...]

    @property
    def files(self) -> tuple[str, ...]:
        """The members' files, a file named twice at its last place: each node reads its
        own sections in its own order (e.g. demo.yaml after edge.yaml and bridge_robot.yaml)."""
        files = [f for n in self.members for f in n.files]
        return tuple(f for i, f in enumerate(files) if f not in files[i + 1:])

    @property
    def respawn(self) -> bool:
        return any(n.respawn for n in self.members)

    @property
    def params(self) -> dict:
        """The members' parameters, for a launch file, where a parameter reaches every node
        of the process: refused where two members would get different values."""
        merged: dict = {}
        for node in self.members:
            for name, value in node.params.items():
                if merged.setdefault(name, value) != value:
                    raise ValueError(f"{self.executable}: '{name}' differs between its nodes")
        return merged

    def parameters(self, fill: Callable[[Arg], Any]) -> dict:
        return NodeSpec(self.executable, self.files, self.params).parameters(fill)

    def arguments(self) -> list[Arg]:
        return [arg for node in self.members for arg in node.arguments()]

    def share(self, table: Mapping[str, dict]) -> dict:
        """The members' entries of a table by executable."""
        return {n.executable: n.share(table) or {} for n in self.members}


@dataclass(frozen=True)
class Graph:
    """The nodes of one deployment, by site (a launch file runs one graph on one host), as
    the processes that run them (a node, or nodes co-located)."""
    name: str
    sites: Mapping[str, tuple[NodeSpec | Colocated, ...]]

    @property
    def processes(self) -> tuple[NodeSpec | Colocated, ...]:
        return tuple(process for processes in self.sites.values() for process in processes)

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return tuple(node for process in self.processes
                     for node in process.members)

    def node(self, executable: str, site: Optional[str] = None) -> NodeSpec:
        (found,) = [n for s, processes in self.sites.items() if site in (None, s)
                    for p in processes for n in p.members
                    if n.executable == executable]
        return found

    @property
    def arguments(self) -> list[Arg]:
        return list(dict.fromkeys(arg for p in self.processes for arg in p.arguments()))


CAMERA = NodeSpec("camera", ("camera.yaml",))
EDGE = NodeSpec("edge", ("edge.yaml",), {"model": DRAFT_MODEL, "robot_id": ROBOT_ID})
CONTROLLER = NodeSpec("controller", ("controller.yaml",))
ROBOT_BRIDGE = NodeSpec("bridge", ("bridge_robot.yaml",),
                        {"robot_id": ROBOT_ID, "connect": [CLOUD_ENDPOINT], "fleet": FLEET})
VERIFIER = NodeSpec("cloud", ("cloud.yaml",), {"model": TARGET_MODEL}, respawn=True)
CLOUD_BRIDGE = NodeSpec("bridge", ("bridge_cloud.yaml",), {"listen": [LISTEN_ENDPOINT]})
# A fleet (docs/scaleout.md): the zenoh router, and replicas connecting to it as clients
# with a short lease, so that a frozen replica leaves the fleet within 2 s.
ROUTER = NodeSpec("router", ("router.yaml",), {"listen": [ROUTER_ENDPOINT]})
REPLICA_BRIDGE = NodeSpec("bridge", ("bridge_cloud.yaml",), {
    "mode": "client", "connect": [ROUTER_ENDPOINT], "replica_id": REPLICA_ID, "lease_ms": 2000})
SIM_WORLD = NodeSpec("sim", ("sim.yaml",), {"sim_seed": SIM_SEED, "sim_task_mix": SIM_TASK_MIX})
SIM_CAMERA = CAMERA.reading(source="sim", sim_seed=SIM_SEED, sim_task_mix=SIM_TASK_MIX)
SIM_CONTROLLER = CONTROLLER.reading("controller_sim.yaml")
DEMO_EDGE = EDGE.reading(DEMO_OVERLAY)
DEMO_VERIFIER = VERIFIER.reading(DEMO_OVERLAY, exit_adapters=EXIT_ADAPTERS)

# The edge and the cloud each with its bridge in one process (colocated.py, rclpy's
# EventsExecutor there): the default layout, the fastest measured (docs/latency.md). The
# `*_separate` graphs run every node in a process of its own (a node restarted alone, one
# node's log or profile).
ROBOT_SITE = Colocated("robot_site", (EDGE, ROBOT_BRIDGE))
CLOUD_SITE = Colocated("cloud_site", (VERIFIER, CLOUD_BRIDGE))
ROBOT_GRAPH = Graph("robot", {ROBOT: (CAMERA, ROBOT_SITE, CONTROLLER)})
CLOUD_GRAPH = Graph("cloud", {CLOUD: (CLOUD_SITE,)})
ROBOT_SEPARATE_GRAPH = Graph("robot_separate", {ROBOT: (CAMERA, EDGE, CONTROLLER, ROBOT_BRIDGE)})
CLOUD_SEPARATE_GRAPH = Graph("cloud_separate", {CLOUD: (VERIFIER, CLOUD_BRIDGE)})
REPLICA_GRAPH = Graph("cloud_replica", {CLOUD: (VERIFIER, REPLICA_BRIDGE)})
FLEET_GRAPH = Graph("cloud_fleet", {CLOUD: (ROUTER, VERIFIER, REPLICA_BRIDGE)})
# Everything on one laptop, in one ROS domain: no bridge.
SIM_GRAPH = Graph("sim", {ROBOT: (SIM_WORLD, SIM_CAMERA, DEMO_EDGE, SIM_CONTROLLER,
                                  DEMO_VERIFIER)})
# `spec-vlm demo`: the sim graph split into a robot and a cloud site joined by the bridges,
# each site's model node and bridge in one process, as robot.launch.py and cloud.launch.py.
DEMO_GRAPH = Graph("demo", {
    ROBOT: (SIM_WORLD, SIM_CAMERA,
            Colocated(ROBOT_SITE.executable, (DEMO_EDGE, ROBOT_BRIDGE.reading(DEMO_OVERLAY))),
            SIM_CONTROLLER),
    CLOUD: (Colocated(CLOUD_SITE.executable,
                      (DEMO_VERIFIER, CLOUD_BRIDGE.reading(DEMO_OVERLAY))),)})
LAUNCHED = {"robot.launch.py": ROBOT_GRAPH, "cloud.launch.py": CLOUD_GRAPH,
            "sim.launch.py": SIM_GRAPH, "cloud_fleet.launch.py": FLEET_GRAPH,
            "cloud_replica.launch.py": REPLICA_GRAPH,
            "robot_separate.launch.py": ROBOT_SEPARATE_GRAPH,
            "cloud_separate.launch.py": CLOUD_SEPARATE_GRAPH}


def launch_nodes(processes, config_dir: str, fill: Callable[[Arg], Any], **options) -> list:
    """launch_ros Node actions of `processes`; `options` go to each Node (e.g.
    additional_env). Co-located nodes keep their own names (no `name`, which would rename
    every node of the process)."""
    from launch_ros.actions import Node
    return [Node(package=PACKAGE, executable=n.executable, respawn=n.respawn, **options,
                 **({} if isinstance(n, Colocated) else {"name": n.executable}),
                 parameters=[os.path.join(config_dir, f) for f in n.files] + [n.parameters(fill)])
            for n in processes]


def launch_description(graph: Graph):
    """The LaunchDescription of a launch file: its arguments and its graph's nodes."""
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import LaunchConfiguration
    config = os.path.join(get_package_share_directory(PACKAGE), "config")
    arguments = [DeclareLaunchArgument(a.name, description=a.description,
                                       **({} if a.default is None else {"default_value": a.default}))
                 for a in graph.arguments]
    return LaunchDescription(arguments + launch_nodes(
        graph.processes, config, lambda arg: LaunchConfiguration(arg.name)))
