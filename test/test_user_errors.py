"""Bad input to the installed `spec-vlm` (options, folders, pair.json, models) ends with exactly
one line on stderr naming the cause, exit status 2, and no traceback; the demo refuses a
broken model pair before it starts any node."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tiny_models import save_tiny_vlm

pytestmark = pytest.mark.slow  # runs the installed spec-vlm program

SPEC_VLM = Path(sys.prefix) / "bin" / "spec-vlm"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A good tiny pair (3-layer target: exits 0..1) and broken variants of it."""
    root = tmp_path_factory.mktemp("user-errors")
    good = root / "good"
    save_tiny_vlm(good / "target", seed=3)
    save_tiny_vlm(good / "draft", seed=11, layers=2, hidden=32, heads=2, kv_heads=1)
    for name, meta in {"bad_json": "{exit_layers: [1]", "list": "[1]",
                       "typo": {"exit_layer": [1]}, "layer_type": {"exit_layers": "1"},
                       "tokens": {"max_new_tokens": -3}, "adapters": {"exit_adapters": "nope"},
                       "layer_99": {"exit_layers": [99]}}.items():
        pair = root / name
        pair.mkdir()
        for side in ("target", "draft"):
            (pair / side).symlink_to(good / side)
        (pair / "pair.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    corrupt = root / "corrupt"
    shutil.copytree(good, corrupt)
    (corrupt / "target" / "model.safetensors").write_bytes(b"\x13" * 1000)
    (root / "no_draft" / "draft").mkdir(parents=True)
    (root / "no_draft" / "target").symlink_to(good / "target")
    (root / "a_file").write_text("not a folder\n")
    (root / "bad.gguf").write_bytes(b"\x00" * 4096)
    (root / "existing").mkdir()
    return root


CASES = {   # id: (arguments, with {root} for the fixture's folder; text the line must name)
    "no command": ([], "required: COMMAND"),
    "unknown command": (["fly"], "invalid choice"),
    "negative tasks": (["demo", "--tasks", "-1"], "--tasks"),
    "tasks not a number": (["demo", "--tasks", "many"], "--tasks"),
    "k zero": (["demo", "-k", "0"], "--block-size"),
    "negative rtt": (["demo", "--rtt-ms", "-5"], "--rtt-ms"),
    "nan rtt": (["demo", "--rtt-ms", "nan"], "--rtt-ms"),
    "zero decisions": (["demo", "--max-decisions", "0"], "--max-decisions"),
    "bench size": (["bench", "--target", "big"], "--target"),
    "bench tokens": (["bench", "--tokens", "0"], "--tokens"),
    "bench exit layer": (["bench", "--exit-layer", "9"], "--exit-layer"),
    "train lr": (["train-exits", "--model", "m", "--exits", "1", "--out", "o", "--lr", "0"],
                 "--lr"),
    "jpeg quality": (["sim-camera-bag", "{root}/bag", "--quality", "101"], "--quality"),
    "bag exists": (["sim-camera-bag", "{root}/existing"], "already exists"),
    "missing models": (["demo", "--models", "{root}/nothing"], "is not a demo model pair"),
    "models a file": (["demo", "--models", "{root}/a_file"], "is not a demo model pair"),
    "pair.json bad json": (["demo", "--models", "{root}/bad_json"], "pair.json"),
    "pair.json a list": (["demo", "--models", "{root}/list"], "not a JSON object"),
    "pair.json unknown key": (["demo", "--models", "{root}/typo"], "exit_layer"),
    "pair.json layer type": (["demo", "--models", "{root}/layer_type"], "exit_layers"),
    "pair.json tokens": (["demo", "--models", "{root}/tokens"], "max_new_tokens"),
    "pair.json adapters": (["demo", "--models", "{root}/adapters"], "exit_adapters"),
    "exit layer beyond target": (["demo", "--models", "{root}/layer_99"], "[99]"),
    "corrupt weights": (["demo", "--models", "{root}/corrupt"], "corrupt/target"),
    "empty draft": (["demo", "--models", "{root}/no_draft"], "no config.json"),
    "out is a file": (["demo", "--models", "{root}/good", "--out", "{root}/a_file"], "--out"),
    "missing model": (["eval-exits", "--model", "{root}/nothing", "--exits", "1"], "nothing"),
    "model a file": (["eval-exits", "--model", "{root}/a_file", "--exits", "1"], "a_file"),
    "not a gguf": (["eval-exits", "--model", "{root}/bad.gguf", "--exits", "1"], "GGUF"),
    "no exits": (["eval-exits", "--model", "{root}/good/target"], "--exits or --adapters"),
    "exit out of range": (["eval-exits", "--model", "{root}/good/target", "--exits", "7"],
                          "--exits 7"),
    "exits not numbers": (["eval-exits", "--model", "{root}/good/target", "--exits", "a"],
                          "--exits: 'a'"),
    "missing data": (["eval-exits", "--model", "{root}/good/target", "--exits", "1",
                      "--data", "{root}/nothing.jsonl"], "--data"),
    "missing adapters": (["eval-exits", "--model", "{root}/good/target", "--adapters",
                          "{root}/nothing"], "--adapters"),
}


@pytest.fixture(scope="module")
def results(files) -> dict:
    """case -> (exit status, stderr); four at a time (a case's time is mostly importing torch)."""
    def run(case):
        arguments = [a.format(root=files) for a in CASES[case][0]]
        done = subprocess.run([str(SPEC_VLM), *arguments], capture_output=True, text=True,
                              cwd=files, timeout=300)
        return done.returncode, done.stderr
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(CASES, pool.map(run, CASES)))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_status_2(case, files, results):
    cause = CASES[case][1]
    returncode, stderr = results[case]
    lines = stderr.splitlines()
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and cause in lines[0], stderr
    assert lines[0].startswith("spec-vlm"), lines[0]
    # the demo refuses a broken pair before it starts the graph (which takes 13-14 s)
    assert not (files / "demo_output").exists()
