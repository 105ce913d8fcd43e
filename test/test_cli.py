"""The installed `spec-vlm` program answers --help for itself and every subcommand."""
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
