"""Every import of the package is declared where a robot install reads it.

The scan parses (never imports) every module of spec_vlm_control and every launch file, and
takes the top-level name of each absolute import, at module level or inside a function. A name
is then:
- skipped when it is the standard library (sys.stdlib_module_names) or this package;
- a ROS package when package.xml declares it or an ament index of this environment lists it:
  it must be a <depend> or <exec_depend> of package.xml (the launch files' `launch` and
  `launch_ros` cannot be installed here, so only their declaration is checked);
- otherwise a Python distribution (importlib.metadata.packages_distributions()), which must be
  in requirements.txt, names compared normalised (PEP 503); a requirement covers every build of
  its distribution, e.g. `torch` the CPU wheel of the development environment.
Optional extras, such as unitree-sdk2py for the real Go2, are comment lines
`# optional: <requirement>` in requirements.txt (setup.py skips comment lines, so a plain
install leaves them out); they may be imported only inside functions, so that every module
imports without them. A name that fits none of these fails the test.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "spec_vlm_control"
OPTIONAL = "# optional:"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(path: Path) -> tuple[dict[str, Requirement], dict[str, Requirement]]:
    """(required, optional) requirements of a requirements file, by normalised name."""
    required, optional = {}, {}
    for line in path.read_text().splitlines():
        if line.startswith(OPTIONAL):
            req = Requirement(line[len(OPTIONAL):].split()[0])
            optional[normalise(req.name)] = req
        elif line.strip() and not line.startswith("#"):
            req = Requirement(line.strip())
            required[normalise(req.name)] = req
    return required, optional


def declared_ros_packages(path: Path) -> set[str]:
    root = ET.parse(path).getroot()
    return {e.text.strip() for tag in ("depend", "exec_depend") for e in root.iter(tag)}


def ament_indexed() -> set[str]:
    """ROS packages installed here: the wheels' prefix (sys.prefix) and any sourced workspace."""
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    names = set()
    for prefix in prefixes:
        index = Path(prefix, "share", "ament_index", "resource_index", "packages")
        if prefix and index.is_dir():
            names.update(p.name for p in index.iterdir())
    return names


class _Imports(ast.NodeVisitor):
    """(top-level name, line, at module level) of every absolute import in a module."""

    def __init__(self) -> None:
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name.split(".")[0], node.lineno, self.depth == 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0:
            self.found.append((node.module.split(".")[0], node.lineno, self.depth == 0))


@functools.cache
def distributions_of_modules() -> dict[str, list[str]]:
    return md.packages_distributions()


def undeclared(files: list[Path], requirements: Path, package_xml: Path) -> list[str]:
    """One line per import that requirements.txt and package.xml do not account for."""
    required, optional = declared_requirements(requirements)
    ros_declared = declared_ros_packages(package_xml)
    ros_installed = ament_indexed()
    problems = []
    for path in files:
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        for name, line, module_level in visitor.found:
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
            where = f"{shown}:{line}: {name}"
            if name in sys.stdlib_module_names or name == PACKAGE:
                continue
            if name in ros_declared:
                continue
            if name in ros_installed:
                problems.append(f"{where}: ROS package missing from package.xml")
                continue
            dists = {normalise(d) for d in distributions_of_modules().get(name, [])}
            if not dists:
                problems.append(f"{where}: no installed distribution or ROS package provides it")
            elif dists & optional.keys():
                if module_level:
                    problems.append(f"{where}: optional extra imported at module level")
            elif not dists & required.keys():
                problems.append(
                    f"{where}: distribution {sorted(dists)} missing from requirements.txt")
    return problems


def scanned_files() -> list[Path]:
    return sorted((REPO / PACKAGE).rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))


def test_every_import_is_declared():
    files = scanned_files()
    assert len(files) > 50 and any("nodes" in f.parts for f in files)
    assert undeclared(files, REPO / "requirements.txt", REPO / "package.xml") == []


def test_this_environment_meets_the_deployment_bounds():
    """What the tests run against is allowed by requirements.txt (torch: the CPU wheel)."""
    required, _ = declared_requirements(REPO / "requirements.txt")
    for name, req in required.items():
        assert req.specifier.contains(md.version(name), prereleases=True), (req, md.version(name))


def test_an_undeclared_import_fails(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("import os\nimport hypothesis\nimport lifecycle_msgs.msg\n"
                      "import unitree_sdk2py\nimport no_such_module\nfrom . import sibling\n"
                      "def lazy():\n    import unitree_sdk2py.core\n    import numpy\n")
    problems = undeclared([module], REPO / "requirements.txt", REPO / "package.xml")
    assert problems == [
        "module.py:2: hypothesis: distribution ['hypothesis'] missing from requirements.txt",
        "module.py:3: lifecycle_msgs: ROS package missing from package.xml",
        "module.py:4: unitree_sdk2py: optional extra imported at module level",
        "module.py:5: no_such_module: no installed distribution or ROS package provides it",
    ]
