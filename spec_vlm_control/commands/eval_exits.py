"""`spec-vlm eval-exits`: top-1 agreement of each exit layer with the last layer."""
from __future__ import annotations

import json
from pathlib import Path

from spec_vlm_control.core.user_errors import UserError, blame

from .train_exits import (add_data_arguments, check_exits, features, layer_list, load_rows,
                          print_agreement)


def configure(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--adapters", default=None,
                        help="folder written by train-exits (default: untrained exits)")
    parser.add_argument("--exits", default=None, type=layer_list,
                        help="exit layers, 0-based (default: those of --adapters)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    if not (args.exits or args.adapters):
        raise UserError("give --exits or --adapters")
    if args.adapters is not None and not Path(args.adapters).is_dir():
        raise UserError(f"--adapters {args.adapters}: no such folder")
    from spec_vlm_control.core import exit_training
    loaded, rows, _ = load_rows(args)
    adapters = {}
    if args.adapters is not None:
        with blame(f"--adapters {args.adapters}"):
            adapters = exit_training.load_exit_adapters(args.adapters, loaded.adapter)
    layers = check_exits(args.exits, loaded.adapter) if args.exits else sorted(adapters)
    data = features(loaded, rows, layers, args.new_tokens, "collect")
    base = exit_training.agreement(loaded.adapter, data)
    trained = exit_training.agreement(loaded.adapter, data, adapters) if adapters else None
    if args.json:
        print(json.dumps({"positions": len(data), "untrained": base, "trained": trained}))
    else:
        print(f"{len(data)} positions from {len(rows)} prompts")
        print_agreement(base, trained)
    return 0
