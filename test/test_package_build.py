"""The ROS build path (colcon) and the set-up step's answers to bad states."""
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs tools/dev setup and colcon

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
PACKAGE_FILES = ("package.xml", "CMakeLists.txt", "setup.cfg", "setup.py", "requirements.txt",
                 "msg", "spec_vlm_control", "launch", "config", "resource")


def copy_package(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in PACKAGE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def node_executables() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return [line.split("=")[0].strip() for line in scripts if "spec_vlm_control.nodes." in line]


def build_env() -> dict:
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV))
    env["PATH"] = f"{VENV / 'bin'}:{env['PATH']}"
    return env


def test_colcon_build_installs_everything_where_ros2_looks(tmp_path):
    copy_package(tmp_path / "ws" / "src" / "spec_vlm_control")
    result = subprocess.run(
        [str(VENV / "bin" / "colcon"), "build", "--event-handlers", "console_direct-",
         "--cmake-args", f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path / "ws", env=build_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    prefix = tmp_path / "ws" / "install" / "spec_vlm_control"

    # `ros2 run spec_vlm_control <exe>` runs lib/spec_vlm_control/<exe>
    for exe in node_executables():
        path = prefix / "lib" / "spec_vlm_control" / exe
        assert path.is_file() and os.access(path, os.X_OK), exe
    assert (prefix / "bin" / "spec-vlm").is_file()
    # `ros2 launch spec_vlm_control <file>` looks in share/spec_vlm_control/launch
    share = prefix / "share" / "spec_vlm_control"
    for folder in ("launch", "config"):
        for src in (REPO / folder).rglob("*"):
            if src.is_file() and "__pycache__" not in src.parts:
                rel = src.relative_to(REPO)
                assert (share / rel).is_file(), f"{rel} not installed"
    assert (share / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "spec_vlm_control").exists()

    # The workspace's own setup script makes modules and messages importable together.
    probe = ("import spec_vlm_control, spec_vlm_control.msg as m; "
             "print(spec_vlm_control.__file__); print(m.DraftBlock(tokens=[7]).tokens[0])")
    run = subprocess.run(["bash", "-c", f"source install/setup.bash && python -c '{probe}'"],
                         cwd=tmp_path / "ws", env=build_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    location, token = run.stdout.split()
    assert location.startswith(str(prefix)) and token == "7"


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "tools").mkdir(parents=True)
    shutil.copy2(REPO / "tools" / "dev", root / "tools" / "dev")
    shutil.copytree(REPO / "requirements", root / "requirements")
    return root


def run_setup(root: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "tools" / "dev"), "setup"], cwd=root,
                          env=dict(os.environ, **env), capture_output=True, text=True, timeout=300)


def test_setup_without_python311_says_so(tmp_path):
    root = make_root(tmp_path)
    result = run_setup(root, PYTHON="python3.11-not-installed")
    assert result.returncode != 0
    assert "needs Python 3.11" in result.stderr
    assert not (root / ".venv").exists()


def test_setup_refuses_a_broken_environment(tmp_path):
    root = make_root(tmp_path)
    fake = root / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    result = run_setup(root)
    assert result.returncode != 0
    assert "is not a Python 3.11 environment" in result.stderr


def test_failed_message_build_is_reported(tmp_path):
    root = make_root(tmp_path)
    copy_package(root / "pkg")
    for item in (root / "pkg").iterdir():
        item.rename(root / item.name)
    (root / "msg" / "Broken.msg").write_text("int32 value\nnot_a_type field\n")
    result = run_setup(root, SPEC_VLM_VENV=str(VENV))
    assert result.returncode != 0
    assert "message build failed" in result.stderr
    assert "not_a_type" in (root / "build" / "package-build.log").read_text()
