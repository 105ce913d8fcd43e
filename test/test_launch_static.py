"""`launch` and `launch_ros` cannot be installed here (they are not on PyPI), so each
installed launch file runs against minimal recording stand-ins for them: the Node actions it
builds must be the graph description's (spec_vlm_control/graphs.py), every executable and
config file it names installed, every YAML key a parameter its node declares, and every
declared parameter documented in the README."""
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml
from harness import EXECUTABLES, SHARE

from spec_vlm_control import graphs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import readme_params  # noqa: E402

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


class Recorded:
    """Stand-in for a launch class: keeps what it was constructed with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"{type(self).__name__}{self.args}"


def stand_in_modules() -> dict:
    classes = {name: type(name, (Recorded,), {}) for name in
               ("LaunchDescription", "DeclareLaunchArgument", "LaunchConfiguration", "Node")}
    layout = {"launch": ["LaunchDescription"], "launch.actions": ["DeclareLaunchArgument"],
              "launch.substitutions": ["LaunchConfiguration"], "launch_ros": [],
              "launch_ros.actions": ["Node"], "ament_index_python": [],
              "ament_index_python.packages": []}
    modules = {}
    for name, members in layout.items():
        modules[name] = types.ModuleType(name)
        for member in members:
            setattr(modules[name], member, classes[member])
    modules["ament_index_python.packages"].get_package_share_directory = \
        lambda package: str(SHARE.parent / package)
    return modules


def load(launch_file: str, monkeypatch) -> tuple[dict, list]:
    """The installed launch file's declared arguments (name -> default) and its Node
    actions (keyword arguments, launch configurations as graphs.Arg names)."""
    for name, module in stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("launch_file", SHARE / "launch" / launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (actions,) = module.generate_launch_description().args

    def plain(value):
        if type(value).__name__ == "LaunchConfiguration":
            return ("argument", value.args[0])
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    arguments = {a.args[0]: a.kwargs.get("default_value") for a in actions
                 if type(a).__name__ == "DeclareLaunchArgument"}
    nodes = [plain(a.kwargs) for a in actions if type(a).__name__ == "Node"]
    return arguments, nodes


def test_the_three_launch_files_exist_and_launch_a_described_graph():
    assert {p.name for p in LAUNCH_FILES} == set(graphs.LAUNCHED)


@pytest.mark.parametrize("launch_file", sorted(graphs.LAUNCHED))
def test_launch_file_starts_the_described_nodes(launch_file, monkeypatch):
    graph = graphs.LAUNCHED[launch_file]
    arguments, nodes = load(launch_file, monkeypatch)
    assert arguments == {a.name: a.default for a in graph.arguments}
    config = SHARE / "config"
    # co-located nodes (graphs.Colocated) keep their own names: no `name` for their process
    assert nodes == [{"package": "spec_vlm_control", "executable": n.executable,
                      **({} if isinstance(n, graphs.Colocated) else {"name": n.executable}),
                      "respawn": n.respawn,
                      "parameters": [str(config / f) for f in n.files]
                      + [n.parameters(lambda arg: ("argument", arg.name))]}
                     for n in graph.processes]


@pytest.mark.parametrize("launch_file", sorted(graphs.LAUNCHED))
def test_launch_file_references_installed_things(launch_file, monkeypatch):
    arguments, nodes = load(launch_file, monkeypatch)
    modules = readme_params.node_modules()
    for node, process in zip(nodes, graphs.LAUNCHED[launch_file].processes, strict=True):
        assert (EXECUTABLES / node["executable"]).is_file(), node["executable"]
        declared = {m.executable: importlib.import_module(modules[m.executable]).PARAMETERS
                    for m in process.members}
        *files, overrides = node["parameters"]
        # a co-located process's parameters reach all its nodes: each takes those it declares
        assert set(overrides) <= {name for names in declared.values() for name in names}
        used = [v for v in overrides.values() for v in (v if isinstance(v, list) else [v])]
        assert {v[1] for v in used if isinstance(v, tuple)} <= set(arguments)
        for path in map(Path, files):
            assert path.is_file(), f"{path.name} is not installed"
            sections = yaml.safe_load(path.read_text())
            assert set(declared) & set(sections), f"{path.name} has no section for {node}"
            for name in set(declared) & set(sections):
                keys = set(sections[name]["ros__parameters"])
                assert keys <= set(declared[name]), \
                    f"{path.name}: undeclared {sorted(keys - set(declared[name]))}"


@pytest.mark.parametrize("config", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_yaml_key_is_declared(config):
    modules = readme_params.node_modules()
    for node_name, section in yaml.safe_load(config.read_text()).items():
        declared = importlib.import_module(modules[node_name]).PARAMETERS
        keys = set(section["ros__parameters"])
        assert keys <= set(declared), f"{config.name}: {sorted(keys - set(declared))}"
        for key in keys:
            default = declared[key][0]
            value = section["ros__parameters"][key]
            assert type(value) is type(default) or (isinstance(default, float)
                                                    and isinstance(value, (int, float))), key


def test_readme_documents_every_declared_parameter():
    readme = (REPO / "README.md").read_text()
    assert readme_params.render(readme) == readme, \
        "README parameter tables are out of date: run .venv/bin/python tools/readme_params.py"
