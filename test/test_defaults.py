"""Every default has one owner, config/*.yaml: each node's YAML file lists every parameter it
declares at its PARAMETERS default, overlays (controller_sim.yaml, demo.yaml) change only
what they mean to, launch arguments default to the YAML's values, and the core dataclasses
that mirror node parameters start from the same values."""
import dataclasses
import importlib
import math
from pathlib import Path

import pytest
import yaml
from harness import CONFIG

from spec_vlm_control import graphs
from spec_vlm_control.camera.frame import Shaper
from spec_vlm_control.control.controller import ActionLimits, ControllerConfig, MotionLimits
from spec_vlm_control.core.cloud import CloudConfig
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.protocol import DecodingParams
from spec_vlm_control.zenoh_link import LinkSettings

REPO = Path(__file__).resolve().parent.parent
NODES = list({id(n): n for g in (*graphs.LAUNCHED.values(), graphs.DEMO_GRAPH)
              for n in g.nodes}.values())


def declared(executable: str) -> dict:
    return importlib.import_module(f"spec_vlm_control.nodes.{executable}").PARAMETERS


def section(file: str, executable: str) -> dict:
    return yaml.safe_load((CONFIG / file).read_text())[executable]["ros__parameters"]


def same(value, default) -> bool:
    """Equal, and of the parameter's type (an int is fine for a float, a bool is no int)."""
    return value == default and (type(value) is type(default)
                                 or isinstance(default, float) and type(value) is int)


BASE_FILES = sorted({(n.files[0], n.executable) for n in NODES})


@pytest.mark.parametrize("file,executable", BASE_FILES, ids=lambda x: x)
def test_a_nodes_own_yaml_lists_every_parameter_at_its_default(file, executable):
    values, table = section(file, executable), declared(executable)
    assert sorted(set(table) - set(values)) == [], f"{file} lacks these parameters"
    assert sorted(set(values) - set(table)) == [], f"{file} has undeclared parameters"
    # The bridge's two files are its two sides: bridge_<side>.yaml sets `side`.
    site = {"side": file[len("bridge_"):-len(".yaml")]} if executable == "bridge" else {}
    differ = {k: (v, table[k][0]) for k, v in values.items()
              if not same(v, site.get(k, table[k][0]))}
    assert differ == {}, f"{file}: value, default"


OVERLAYS = {f"{n.files[i]} over {n.files[i - 1]}": (n, i)
            for n in NODES for i in range(1, len(n.files))}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_an_overlay_changes_declared_parameters_only_where_it_means_to(overlay):
    node, index = OVERLAYS[overlay]
    earlier = dataclasses.replace(node, files=node.files[:index]).yaml_parameters(CONFIG)
    overlay = section(node.files[index], node.executable)
    assert set(overlay) <= set(declared(node.executable))
    restated = [k for k, v in overlay.items() if same(v, earlier[k])]
    assert restated == [], f"{node.files[index]} restates what {node.files[:index]} say"


def test_every_yaml_section_is_read_by_a_node_of_the_graphs():
    read = {(f, n.executable) for n in NODES for f in n.files}
    written = {(p.name, name) for p in (REPO / "config").glob("*.yaml")
               for name in yaml.safe_load(p.read_text())}
    assert written - read == set()


def test_launch_arguments_default_to_the_yaml_values_they_replace():
    checked = 0
    for node in NODES:
        values = node.yaml_parameters(CONFIG)
        for name, value in node.params.items():
            if isinstance(value, graphs.Arg) and value.default is not None:
                assert value.default == str(values[name]), (node, name)
                checked += 1
            elif isinstance(value, list):     # the endpoints: the argument's default only
                assert values[name] == [""], (node, name)
    assert checked >= 4


def degrees(value):
    return math.radians(value)


def no_empty(value):
    """ROS cannot declare an empty string array: [""] stands for none."""
    return [v for v in value if v]


# core dataclass: (its node, {field: (parameter, conversion)} where the names differ);
# fields named as a parameter are compared as they are; None: not compared.
MIRRORS = {
    EdgeConfig: (graphs.EDGE, {}),
    # the message's mode is the protocol's zero (plain); the edge's default mode is the YAML's
    DecodingParams: (graphs.EDGE, {"mode": None}),
    CloudConfig: (graphs.VERIFIER, {}),
    ControllerConfig: (graphs.CONTROLLER, {"rate_hz": ("control_rate_hz", None)}),
    ActionLimits: (graphs.CONTROLLER, {"clamp": ("clamp_out_of_range", None)}),
    MotionLimits: (graphs.CONTROLLER, {
        "linear_speed": ("linear_speed_mps", None), "lateral_speed": ("lateral_speed_mps", None),
        "yaw_rate": ("yaw_rate_dps", degrees), "linear_accel": ("linear_accel_mps2", None),
        "yaw_accel": ("yaw_accel_dps2", degrees)}),
    Shaper: (graphs.CAMERA, {}),
    LinkSettings: (graphs.ROBOT_BRIDGE, {"connect": ("connect", no_empty),
                                         "listen": ("listen", no_empty),
                                         "robots": ("robots", no_empty)}),
}


@pytest.mark.parametrize("cls", MIRRORS, ids=lambda c: c.__name__)
def test_core_dataclass_defaults_equal_the_yaml(cls):
    node, renamed = MIRRORS[cls]
    values = node.yaml_parameters(CONFIG)
    compared = {}
    for f in dataclasses.fields(cls):
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else dataclasses.MISSING)
        mapping = renamed.get(f.name, (f.name, None) if f.name in values else None)
        if mapping is None or default is dataclasses.MISSING:
            continue
        parameter, convert = mapping
        compared[f.name] = (default, (convert or (lambda v: v))(values[parameter]))
    assert compared, f"{cls.__name__} mirrors no parameter of {node.files}"
    differ = {k: (d, y) for k, (d, y) in compared.items()
              if not (math.isclose(d, y) if isinstance(d, float) else d == y)}
    assert differ == {}, f"{cls.__name__}'s default, {node.files}' value"
