"""`spec-vlm eval-exits`: top-1 agreement of each exit layer with the last layer."""
from __future__ import annotations

import json

from .train_exits import add_data_arguments, features, load_rows, print_agreement


def configure(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--adapters", default=None,
                        help="folder written by train-exits (default: untrained exits)")
    parser.add_argument("--exits", default=None,
                        help="exit layers, 0-based (default: those of --adapters)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from spec_vlm_control.core import exit_training
    loaded, rows, _ = load_rows(args)
    adapters = {} if args.adapters is None else \
        exit_training.load_exit_adapters(args.adapters, loaded.adapter)
    if args.exits:
        layers = sorted(int(x) for x in args.exits.split(","))
    elif adapters:
        layers = sorted(adapters)
    else:
        raise SystemExit("give --exits or --adapters")
    data = features(loaded, rows, layers, args.new_tokens, "collect")
    base = exit_training.agreement(loaded.adapter, data)
    trained = exit_training.agreement(loaded.adapter, data, adapters) if adapters else None
    if args.json:
        print(json.dumps({"positions": len(data), "untrained": base, "trained": trained}))
    else:
        print(f"{len(data)} positions from {len(rows)} prompts")
        print_agreement(base, trained)
    return 0
