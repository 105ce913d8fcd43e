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
class Graph:
    """The nodes of one deployment, by site (a launch file runs one graph on one host)."""
    name: str
    sites: Mapping[str, tuple[NodeSpec, ...]]

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return tuple(node for nodes in self.sites.values() for node in nodes)

    def node(self, executable: str, site: Optional[str] = None) -> NodeSpec:
        (found,) = [n for s, nodes in self.sites.items() if site in (None, s)
                    for n in nodes if n.executable == executable]
        return found

    @property
    def arguments(self) -> list[Arg]:
        return list(dict.fromkeys(arg for node in self.nodes for arg in node.arguments()))


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
SIM_WORLD = NodeSpec("sim", ("sim.yaml",), {"sim_seed": SIM_SEED})
SIM_CAMERA = CAMERA.reading(source="sim", sim_seed=SIM_SEED)
SIM_CONTROLLER = CONTROLLER.reading("controller_sim.yaml")
DEMO_EDGE = EDGE.reading(DEMO_OVERLAY)
DEMO_VERIFIER = VERIFIER.reading(DEMO_OVERLAY, exit_adapters=EXIT_ADAPTERS)

ROBOT_GRAPH = Graph("robot", {ROBOT: (CAMERA, EDGE, CONTROLLER, ROBOT_BRIDGE)})
CLOUD_GRAPH = Graph("cloud", {CLOUD: (VERIFIER, CLOUD_BRIDGE)})
REPLICA_GRAPH = Graph("cloud_replica", {CLOUD: (VERIFIER, REPLICA_BRIDGE)})
FLEET_GRAPH = Graph("cloud_fleet", {CLOUD: (ROUTER, VERIFIER, REPLICA_BRIDGE)})
# Everything on one laptop, in one ROS domain: no bridge.
SIM_GRAPH = Graph("sim", {ROBOT: (SIM_WORLD, SIM_CAMERA, DEMO_EDGE, SIM_CONTROLLER,
                                  DEMO_VERIFIER)})
# `spec-vlm demo`: the sim graph split into a robot and a cloud site joined by the bridges.
DEMO_GRAPH = Graph("demo", {
    ROBOT: (SIM_WORLD, SIM_CAMERA, DEMO_EDGE, SIM_CONTROLLER, ROBOT_BRIDGE.reading(DEMO_OVERLAY)),
    CLOUD: (DEMO_VERIFIER, CLOUD_BRIDGE.reading(DEMO_OVERLAY))})
LAUNCHED = {"robot.launch.py": ROBOT_GRAPH, "cloud.launch.py": CLOUD_GRAPH,
            "sim.launch.py": SIM_GRAPH, "cloud_fleet.launch.py": FLEET_GRAPH,
            "cloud_replica.launch.py": REPLICA_GRAPH}


def launch_nodes(nodes, config_dir: str, fill: Callable[[Arg], Any], **options) -> list:
    """launch_ros Node actions of `nodes`; `options` go to each Node (e.g. additional_env)."""
    from launch_ros.actions import Node
    return [Node(package=PACKAGE, executable=n.executable, name=n.executable,
                 respawn=n.respawn, **options,
                 parameters=[os.path.join(config_dir, f) for f in n.files] + [n.parameters(fill)])
            for n in nodes]


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
        graph.nodes, config, lambda arg: LaunchConfiguration(arg.name)))
