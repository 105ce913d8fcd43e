"""The demo's model pair on disk: a folder with `target/` and `draft/` (Hugging Face model
folders with tokenizer and image processor), the target's exit adapters (`target/exits/`, as
`spec-vlm train-exits` writes them) and optionally `pair.json` ({"exit_layers": [k],
"max_new_tokens": n, "exit_adapters": "relative/path"}).

The trained pair ships inside the package (data/demo_pair); `--models DIR` points the demo
at any folder of the same layout (e.g. tiny random checkpoints in the tests)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..demo_pair import COMMITTED

DEFAULT_MAX_NEW_TOKENS = 32


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
        candidate = self.root / named if named else self.target / "exits"
        return candidate if candidate.exists() else None

    @property
    def exit_layers(self) -> list[int]:
        """pair.json's, else those the exit adapters were trained for."""
        if "exit_layers" in self.meta:
            return [int(k) for k in self.meta["exit_layers"]]
        if self.exit_adapters is not None:
            from ..core.exit_training import CONFIG
            return json.loads((self.exit_adapters / CONFIG).read_text())["exit_layers"]
        return []

    @property
    def max_new_tokens(self) -> int:
        return int(self.meta.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))


def open_pair(path: Optional[str | Path] = None) -> PairFolder:
    root = Path(path) if path else COMMITTED
    missing = [name for name in ("target", "draft") if not (root / name).is_dir()]
    if missing:
        hint = ("" if path else " (the trained demo pair is not installed: run "
                "`spec-vlm train-demo`, or pass --models DIR)")
        raise FileNotFoundError(f"{root} is not a demo model pair: no {', '.join(missing)}"
                                + hint)
    meta = root / "pair.json"
    return PairFolder(root, json.loads(meta.read_text()) if meta.exists() else {})
