#!/usr/bin/env python3
"""What one batched verification pass costs on a GPU against the same sessions one per pass.

The cloud verifies every robot's draft block through one pass code, core/models/decoder.py's
`extend_batch`; `core.batch.microbenchmark` times it batched and with one session per pass,
cache assembly included. This script runs that microbenchmark on a random-weight Llama of
realistic width built in code (no download, default hidden 2048 x 4 layers, fp16), for
N = 1, 8 and 32 sessions of 5-position blocks (k = 4 drafts after the pending token) and of
1-position streaming steps. Core only: it imports no ROS, so it runs wherever torch and
transformers do:

    python3 tools/gpu_pass_check.py --out gpu_pass

writes gpu_pass.json and gpu_pass.md (configuration, machine, versions, one row per shape).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from spec_vlm_control.core.batch import microbenchmark  # noqa: E402
from spec_vlm_control.core.models.synthetic import tiny_llama  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_pass", help="path prefix of the .json and .md")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--positions", type=int, nargs="+", default=[5, 1])
    parser.add_argument("--prompt-lengths", type=int, nargs="+", default=[64, 448])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()

    torch.set_num_threads(1)
    started = time.time()
    adapter = tiny_llama(seed=0, vocab=args.vocab, hidden=args.hidden, layers=args.layers,
                         heads=args.heads, dtype=getattr(torch, args.dtype), init_std=0.02,
                         device=args.device)
    shapes = [(n, p) for p in args.positions for n in args.sessions]
    rows = []
    for length in args.prompt_lengths:
        for row in microbenchmark(adapter, shapes=shapes, prompt_length=length,
                                  repeats=args.repeats):
            rows.append(dict(prompt_length=length, **row))
            print(f"prompt {length:4d}  {row['sessions']:3d} x {row['positions']}: batched "
                  f"{1000 * row['batched_s']:8.2f} ms, one per pass "
                  f"{1000 * row['one_per_pass_s']:8.2f} ms, {row['speedup']:.2f}x", flush=True)
    device = torch.device(args.device)
    result = dict(
        what="core.batch.microbenchmark: median of one batched extend_batch pass vs the same "
             "rows one session per pass, cache assembly included, random-weight Llama",
        config=dict(vars(args), intermediate=2 * args.hidden,
                    kv_heads=max(1, args.heads // 2), torch_threads=1),
        machine=dict(
            device=torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(),
            python=platform.python_version(), torch=torch.__version__,
            cuda=torch.version.cuda, transformers=transformers.__version__),
        seconds=round(time.time() - started, 1), rows=rows)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    machine = result["machine"]
    lines = [f"Per-pass cost on {machine['device']} (torch {machine['torch']}, transformers "
             f"{machine['transformers']}), random-weight Llama hidden {args.hidden} x "
             f"{args.layers} layers, {args.dtype}:", "",
             "| prompt | sessions x positions | batched ms | one per pass ms | ratio |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['prompt_length']} | {r['sessions']} x {r['positions']} | "
              f"{1000 * r['batched_s']:.2f} | {1000 * r['one_per_pass_s']:.2f} | "
              f"{r['speedup']:.2f}x |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
