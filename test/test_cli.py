"""The installed `spec-vlm` program answers --help for itself and every subcommand."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spec_vlm_control.cli import COMMANDS

pytestmark = pytest.mark.slow  # runs the installed spec-vlm program

SPEC_VLM = Path(sys.prefix) / "bin" / "spec-vlm"


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS], ids=str)
def test_help(command):
    result = subprocess.run([str(SPEC_VLM), *command, "--help"], capture_output=True, text=True,
                            cwd="/", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: spec-vlm" in result.stdout


def test_info_finds_the_generated_messages():
    result = subprocess.run([str(SPEC_VLM), "info", "--json"], capture_output=True, text=True,
                            cwd="/", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "DraftBlock" in result.stdout


@pytest.mark.parametrize("script", [SPEC_VLM] + sorted(
    (Path(sys.prefix) / "lib" / "spec_vlm_control").iterdir()), ids=lambda p: p.name)
def test_an_installed_program_does_not_run_again_in_a_spawned_worker(script, domain_id):
    """A worker started with the `spawn` method (train-demo's) imports the main script as
    `__mp_main__`: the program must not start again there (a node would start, `spec-vlm`
    would answer `--help` and exit)."""
    code = ("import runpy, sys; sys.argv = [sys.argv[0], '--help']; "
            f"runpy.run_path({str(script)!r}, run_name='__mp_main__'); print('imported')")
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain_id))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/", timeout=60, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "imported", result.stderr[-2000:]
