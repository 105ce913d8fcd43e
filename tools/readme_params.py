"""Write the README's parameter tables from the nodes' PARAMETERS tables.

Each node module (spec_vlm_control/nodes/<executable>.py, listed in setup.cfg) declares
exactly its PARAMETERS; the README shows them between `<!-- params:<node> -->` markers, and
test/test_launch_static.py fails when the two drift apart. Run after changing a parameter:
    .venv/bin/python tools/readme_params.py
"""
from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def node_modules() -> dict[str, str]:
    """executable -> module, from setup.cfg's console_scripts."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = {}
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, target = (part.strip() for part in line.split("="))
        if ".nodes." in target:
            out[name] = target.split(":")[0]
    return out


def table(module: str) -> str:
    parameters = importlib.import_module(module).PARAMETERS
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for name, entry in parameters.items():
        default, text = entry[0], entry[1] + (f" ({entry[2]})" if len(entry) > 2 else "")
        shown = repr(default) if isinstance(default, (str, list)) else str(default).lower() \
            if isinstance(default, bool) else str(default)
        rows.append(f"| `{name}` | `{shown}` | {text} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    for executable, module in node_modules().items():
        pattern = re.compile(rf"(<!-- params:{executable} -->\n)(?:.*?\n)?(<!-- /params:{executable} -->)",
                             re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- params:{executable} --> section")
        readme = pattern.sub(lambda m: m.group(1) + table(module) + "\n" + m.group(2), readme)
    return readme


if __name__ == "__main__":
    path = ROOT / "README.md"
    path.write_text(render(path.read_text()))
