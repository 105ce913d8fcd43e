"""The demo's model pair on disk: a folder with `target/` and `draft/` (Hugging Face model
folders with tokenizer and image processor), the target's exit adapters (`target/exits/`, as
`spec-vlm train-exits` writes them) and optionally `pair.json` ({"exit_layers": [k],
"max_new_tokens": n, "exit_adapters": "relative/path", "task_mix": name}); `task_mix`
names the scene sampler's task mix the pair was trained on (sim/scenes.TASK_MIXES, default
the first pair's), from which the demo samples its tasks.

The trained pair ships inside the package (data/demo_pair); `--models DIR` points the demo
at any folder of the same layout (e.g. tiny random checkpoints in the tests).

`open_pair` checks the layout and pair.json, `load_checked` loads both models and checks
the exits against the target: the demo calls both before it starts any node, so a broken
pair is one line (a UserError) instead of a graph that starts and then fails."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.user_errors import UserError, blame
from ..demo_pair import COMMITTED
from ..sim.scenes import DEFAULT_TASK_MIX, TASK_MIXES

DEFAULT_MAX_NEW_TOKENS = 32
META_KEYS = ("exit_layers", "max_new_tokens", "exit_adapters", "task_mix")


@dataclass(frozen=True)
class PairFolder:
    root: Path
    meta: dict

    @property
    def target(self) -> Path:
        return self.root / "target"

    @property
    def draft(self) -> Path:
        return self.root / "draft"

    @property
    def exit_adapters(self) -> Optional[Path]:
        """Trained exit adapters of the target, if the pair has them (else the exits read
        through the target's own norm and LM head)."""
        named = self.meta.get("exit_adapters")
        if named:
            return self.root / named                 # open_pair checked that it exists
        candidate = self.target / "exits"
        return candidate if candidate.exists() else None

    @property
    def exit_layers(self) -> list[int]:
        """pair.json's, else those the exit adapters were trained for."""
        if "exit_layers" in self.meta:
            return self.meta["exit_layers"]
        if self.exit_adapters is not None:
            from ..core.exit_training import CONFIG
            with blame(f"exit adapters {self.exit_adapters}"):
                return [int(k) for k in
                        json.loads((self.exit_adapters / CONFIG).read_text())["exit_layers"]]
        return []

    @property
    def max_new_tokens(self) -> int:
        return int(self.meta.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))

    @property
    def task_mix(self) -> str:
        return self.meta.get("task_mix", DEFAULT_TASK_MIX)


def open_pair(path: Optional[str | Path] = None) -> PairFolder:
    root = Path(path) if path else COMMITTED
    missing = [name for name in ("target", "draft") if not (root / name).is_dir()]
    if missing:
        hint = ("" if path else " (the trained demo pair is not installed: run "
                "`spec-vlm train-demo`, or pass --models DIR)")
        raise UserError(f"{root} is not a demo model pair: no {', '.join(missing)}" + hint)
    meta = root / "pair.json"
    return PairFolder(root, _read_meta(meta) if meta.exists() else {})


def _read_meta(path: Path) -> dict:
    """pair.json, every key checked (a typo in a key would otherwise be ignored silently)."""
    with blame(str(path)):
        meta = json.loads(path.read_text())
    if not isinstance(meta, dict):
        raise UserError(f"{path}: not a JSON object")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown keys {unknown} (allowed: {', '.join(META_KEYS)})")
    layers = meta.get("exit_layers", [])
    if not isinstance(layers, list) or not all(type(k) is int for k in layers):
        raise UserError(f"{path}: exit_layers must be a list of integers, not {layers!r}")
    tokens = meta.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    if type(tokens) is not int or tokens < 1:
        raise UserError(f"{path}: max_new_tokens must be a positive integer, not {tokens!r}")
    mix = meta.get("task_mix", DEFAULT_TASK_MIX)
    if not (isinstance(mix, str) and mix in TASK_MIXES):
        raise UserError(f"{path}: task_mix must be one of {', '.join(TASK_MIXES)}, not {mix!r}")
    named = meta.get("exit_adapters")
    if named is not None and not (isinstance(named, str) and (path.parent / named).is_dir()):
        raise UserError(f"{path}: exit_adapters {named!r} is not a folder beside it")
    return meta


@dataclass
class LoadedPair:
    target: object                       # core.models.loading.LoadedModel
    draft: object
    exit_adapters: Optional[dict]        # layer -> trained adapter, or None


def load_checked(pair: PairFolder, dtype: str) -> LoadedPair:
    """Both models (same tokenizer), the exit adapters and layers checked against the target."""
    from ..core.exit_training import load_exit_adapters
    from ..core.models.loading import load_pair
    draft, target = load_pair(str(pair.draft), str(pair.target), dtype)
    adapters = None
    if pair.exit_adapters is not None:
        with blame(f"exit adapters {pair.exit_adapters}"):
            adapters = load_exit_adapters(pair.exit_adapters, target.adapter)
    last = target.adapter.num_layers - 2          # an exit needs a layer after it
    outside = [k for k in pair.exit_layers if not 0 <= k <= last]
    if outside:
        raise UserError(f"{pair.root}: exit layers {outside} are not within the target's "
                        f"0..{last} ({target.adapter.num_layers} layers)")
    return LoadedPair(target, draft, adapters)
