"""`spec-vlm train-demo`: train the demo VLM pair from nothing (see demo_pair/pipeline.py)."""
from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("--out", default="demo_pair",
                        help="folder for target/, draft/, metrics.json, curves.png, MODEL_CARD.md")
    parser.add_argument("--work", default=None,
                        help="folder for rendered scenes and the blind baseline (default: OUT/work)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes on a few hundred scenes: checks the pipeline, "
                             "trains nothing useful")


def run(args) -> int:
    from dataclasses import replace
    from pathlib import Path
    from spec_vlm_control.demo_pair.pipeline import Plan, quick_plan, run as run_pipeline
    plan = quick_plan() if args.quick else Plan()
    plan = replace(plan, recipe=replace(plan.recipe, seed=args.seed))
    out = Path(args.out)
    result = run_pipeline(plan, out, Path(args.work) if args.work else out / "work")
    m = result["metrics"]
    print(f"target exact {m['target']['all']['exact']:.1%} (within one step "
          f"{m['target']['all']['within_one_step']:.1%}), blind baseline "
          f"{m['blind_baseline']['all']['exact']:.1%}, acceptance {m['acceptance_k4']:.1%} "
          f"({m['speculative']['stop excluded']['acceptance']:.1%} without stop answers), "
          f"exit agreement {m['exit_agreement']:.1%}, draft cost {m['draft_cost_ratio']:.1%}; "
          f"{result['timings_s']['total_s'] / 60:.1f} min. Model card: {out / 'MODEL_CARD.md'}")
    return 0
