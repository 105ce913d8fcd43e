"""`launch` cannot run on these machines, so the launch files are checked statically: every
executable and config file they name is installed, every YAML key is a parameter its node
declares, and every declared parameter is documented in the README."""
import ast
import importlib
import sys
from pathlib import Path

import pytest
import yaml
from harness import EXECUTABLES, SHARE

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import readme_params  # noqa: E402

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def launched_nodes(path: Path) -> list[dict]:
    """executable, name and YAML files of every launch_ros Node(...) in a launch file."""
    nodes = []
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Node":
            kw = {k.arg: k.value for k in call.keywords}
            yamls = [c.value for c in ast.walk(kw["parameters"])
                     if isinstance(c, ast.Constant) and str(c.value).endswith(".yaml")]
            nodes.append({"executable": kw["executable"].value, "name": kw["name"].value,
                          "package": kw["package"].value, "yamls": yamls})
    return nodes


def test_the_three_launch_files_exist():
    assert {p.name for p in LAUNCH_FILES} >= {"robot.launch.py", "cloud.launch.py",
                                              "sim.launch.py"}


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_installed_things(launch_file):
    nodes = launched_nodes(launch_file)
    assert nodes, "no Node(...) found"
    assert (SHARE / "launch" / launch_file.name).is_file()
    modules = readme_params.node_modules()
    for node in nodes:
        assert node["package"] == "spec_vlm_control"
        assert (EXECUTABLES / node["executable"]).is_file(), node["executable"]
        declared = importlib.import_module(modules[node["executable"]]).PARAMETERS
        for name in node["yamls"]:
            path = SHARE / "config" / name
            assert path.is_file(), f"{name} is not installed"
            sections = yaml.safe_load(path.read_text())
            assert node["name"] in sections, f"{name} has no section for node {node['name']}"
            keys = set(sections[node["name"]]["ros__parameters"])
            assert keys <= set(declared), f"{name}: undeclared {sorted(keys - set(declared))}"


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
