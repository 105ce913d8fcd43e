"""`spec-vlm train-exits`: distil the exit adapters of a frozen target (see core/exit_training)."""
from __future__ import annotations

from spec_vlm_control.core.user_errors import UserError, blame

from . import count, number


def layer_list(text: str) -> list[int]:
    """An argparse type: "8,16" -> [8, 16] (checked against the model once it is loaded)."""
    import argparse
    try:
        return sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "layer numbers") from None


def add_data_arguments(parser) -> None:
    """Model and data options shared with `eval-exits`."""
    parser.add_argument("--model", required=True,
                        help="local folder, HF repo id in the local cache, .gguf file or alias")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16", "fp64"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=None,
                        help="JSONL of MT-bench rows or {instruction, image} rows "
                             "(default: the shipped MT-bench prompts)")
    parser.add_argument("--samples", type=number(int, 0), default=40, help="prompts to use (0 = all)")
    parser.add_argument("--new-tokens", type=count(), default=48,
                        help="greedy tokens generated per prompt; each is one training position")
    parser.add_argument("--threads", type=count(), default=1)
    parser.add_argument("--seed", type=int, default=0)


def configure(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--exits", required=True, type=layer_list,
                        help="exit layers, 0-based, e.g. 8,16")
    parser.add_argument("--holdout", type=number(float, 0.0, 0.9), default=0.2,
                        help="share of prompts kept out of training to measure agreement")
    parser.add_argument("--steps", type=count(), default=500)
    parser.add_argument("--lr", type=number(float, 0.0, low_open=True), default=1e-3)
    parser.add_argument("--batch", type=count(), default=256)
    parser.add_argument("--out", required=True, help="folder for weights, JSON and model card")


def load_rows(args):
    """(loaded model, (instruction, image) rows, data path) for the options above."""
    import torch
    from spec_vlm_control.core import exit_training
    from spec_vlm_control.core.models.loading import load_model
    torch.set_num_threads(args.threads)
    data = args.data or exit_training.default_data()
    with blame(f"--data {data}"):
        rows = exit_training.read_instructions(data)
    if not rows:
        raise UserError(f"--data {data}: no prompts in it")
    rows = rows[:args.samples] if args.samples else rows
    with blame(f"--device {args.device}"):
        torch.empty(0, device=args.device)
    return load_model(args.model, args.dtype, args.device), rows, data


def check_exits(layers: list[int], adapter) -> list[int]:
    """--exits: layers that have a layer after them in `adapter`."""
    last = adapter.num_layers - 2
    if not all(0 <= layer <= last for layer in layers):
        raise UserError(f"--exits {','.join(map(str, layers))}: exit layers must lie in "
                        f"0..{last} ({adapter.num_layers} layers)")
    return layers


def features(loaded, rows, layers, new_tokens, desc):
    from tqdm import tqdm
    from spec_vlm_control.core import exit_training
    with tqdm(total=len(rows) * new_tokens, desc=desc, unit="tok") as bar:
        return exit_training.collect(loaded.adapter, exit_training.build_prompts(loaded.prompts, rows),
                                     layers, new_tokens, progress=bar)


def print_agreement(before: dict, after: dict | None = None) -> None:
    print("exit layer  untrained" + ("  trained" if after else ""))
    for layer in sorted(before):
        line = f"{layer:>10}  {before[layer]:>9.1%}"
        print(line + (f"  {after[layer]:>7.1%}" if after else ""))


def run(args) -> int:
    from tqdm import tqdm
    from spec_vlm_control.core import exit_training
    loaded, rows, data = load_rows(args)
    layers = check_exits(args.exits, loaded.adapter)
    train_rows, eval_rows = exit_training.split(rows, args.holdout, args.seed)
    train_set = features(loaded, train_rows, layers, args.new_tokens, "collect (train)")
    eval_set = features(loaded, eval_rows, layers, args.new_tokens, "collect (held out)") \
        if eval_rows else train_set
    with tqdm(total=args.steps, desc="train exits", unit="step") as bar:
        adapters = exit_training.train(loaded.adapter, train_set, args.steps, args.lr, args.batch,
                                       args.seed, progress=bar)
    before = exit_training.agreement(loaded.adapter, eval_set)
    after = exit_training.agreement(loaded.adapter, eval_set, adapters)
    meta = {"model": args.model, "fingerprint": loaded.fingerprint, "dtype": args.dtype,
            "data": str(data), "train_prompts": len(train_rows), "eval_prompts": len(eval_rows),
            "train_positions": len(train_set), "eval_positions": len(eval_set),
            "new_tokens": args.new_tokens, "steps": args.steps, "lr": args.lr,
            "batch": args.batch, "seed": args.seed,
            "agreement_before": {str(k): v for k, v in before.items()},
            "agreement_after": {str(k): v for k, v in after.items()}}
    folder = exit_training.save(args.out, adapters, meta)
    print_agreement(before, after)
    print(f"saved {folder}")
    return 0
