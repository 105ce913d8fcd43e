"""The demo VLM pair: a Qwen2-VL target and draft trained on the simulated world.

`train-demo` (pipeline.run) reproduces them from nothing; the weights of a logged run are
committed in `COMMITTED` so the demo starts without training.
"""
from pathlib import Path

COMMITTED = Path(__file__).resolve().parent.parent / "data" / "demo_pair"
