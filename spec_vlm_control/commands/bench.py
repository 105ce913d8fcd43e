"""`spec-vlm bench`: time per token of every decoding mode against streaming cloud-only
decoding, on the link emulator, with a draft that always agrees and one that never does.

Both sides run in virtual time (core/decode.py), one thread, the link adding its latency.
`--clock calibrated` (default) measures what a target pass (per position) and a draft step
cost on this machine (median of the faster half of many interleaved runs, so a busy shared
machine disturbs it little), then charges exactly those costs: repeatable figures from real
costs. Each of the --repeats (at least 5) calibrates again, interleaved with the runs, and
every ratio to streaming is reported as its median and its min-max over them.
`--clock measured` charges each unit of work its own wall time instead (noisy when the
machine is shared). The target is a Llama built in code, sized so a pass costs several times
a draft step; the drafts run a small model and propose the target's own answer (always) or
never. The models really run either way: every output is checked against the target's
greedy answer.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from ..core.user_errors import UserError, blame
from . import count, number

MODES = ("plain", "early_exit", "preemptive", "pipelined", "cloud_led")
BASELINES = ("stream", "per_token")   # cloud-only streaming; one request per token


def configure(parser) -> None:
    parser.add_argument("--out", default="bench/results", help="output folder (JSON + PNG)")
    parser.add_argument("--rtt-ms", type=number(float, 0.0), default=50.0,
                        help="round trip of the link")
    parser.add_argument("--tokens", type=count(), default=48, help="tokens per request")
    parser.add_argument("-k", "--block-size", type=count(), default=4)
    parser.add_argument("--repeats", type=count(5), default=5,
                        help="calibrations (--clock calibrated) or runs per case (measured)")
    parser.add_argument("--clock", choices=("calibrated", "measured"), default="calibrated")
    parser.add_argument("--target", type=_size, default="256x6", help="target hidden x layers")
    parser.add_argument("--draft", type=_size, default="64x2", help="draft hidden x layers")
    parser.add_argument("--vocab", type=count(8), default=256)
    parser.add_argument("--exit-layer", type=number(int, 0), default=None,
                        help="default: half depth")
    parser.add_argument("--smollm2", default=None, metavar="GGUF",
                        help="also measure the exit overhead on this GGUF (or a packaged "
                             "alias of core/models/gguf.py), e.g. SmolLM2-135M-Instruct")
    parser.add_argument("--exit-train-steps", type=number(int, 0), default=0,
                        help="train the exit adapter on the benchmark request's own answer "
                             "first (an in-distribution exit: an upper bound for early "
                             "verdicts; 0 = untrained exit, near-useless on a random target)")
    parser.add_argument("--overhead-only", action="store_true",
                        help="skip the mode comparison, measure only the exit overhead")


def _size(text: str) -> tuple[int, int]:
    """"256x6": hidden size (a multiple of 8, the heads) x layers (2 or more)."""
    import argparse
    try:
        hidden, layers = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HIDDENxLAYERS, e.g. 256x6") from None
    if hidden < 8 or hidden % 8 or layers < 2:
        raise argparse.ArgumentTypeError(f"{text}: hidden must be a multiple of 8, layers >= 2")
    return hidden, layers


def _models(args):
    import torch
    from ..core.models.synthetic import random_prompt, tiny_llama
    th, tl = args.target
    dh, dl = args.draft
    target = tiny_llama(seed=1, vocab=args.vocab, hidden=th, layers=tl, heads=8,
                        dtype=torch.float32, init_std=0.02)
    draft = tiny_llama(seed=2, vocab=args.vocab, hidden=dh, layers=dl, heads=4,
                       dtype=torch.float32, init_std=0.02)
    prompt = random_prompt(7, args.vocab, length=24)
    with torch.no_grad():
        out = target.model.generate(prompt.input_ids, do_sample=False, pad_token_id=0,
                                    max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                    eos_token_id=None)
    answer = out[0, prompt.input_ids.shape[1]:].tolist()
    return target, draft, prompt, answer


def _cases(args):
    for agreement in (1.0, 0.0):
        for mode in MODES + BASELINES:
            if mode in BASELINES and agreement == 0.0:
                continue                       # baselines do not draft
            yield mode, agreement


def _fast_median(times: list[float]) -> float:
    times = sorted(times)
    return statistics.median(times[: max(1, len(times) // 2)])


def calibrate(models, k: int, repeats: int = 20):
    """Costs of this machine: target pass = a + b * positions, draft step = c. The three
    passes are timed in turn, so a drift in the machine's load hits all alike."""
    from ..core.decode import Costs
    from ..core.sequence import Sequence
    target, draft, prompt, _ = models
    kinds = {"one": (target, []), "many": (target, list(range(2, k + 2))), "draft": (draft, [])}
    seqs = {name: Sequence(model, prompt) for name, (model, _) in kinds.items()}
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(repeats):
        for name, (_, block) in kinds.items():
            t0 = time.perf_counter()
            seqs[name].feed(block)
            times[name].append(time.perf_counter() - t0)
            seqs[name].settle([])
    one, many = _fast_median(times["one"]), _fast_median(times["many"])
    per_token = max(0.0, (many - one) / k)
    return Costs(target_pass=one - per_token, target_token=per_token,
                 draft_pass=_fast_median(times["draft"]), draft_token=0.0)


def run_case(mode, agreement, models, args, costs=None, exit_adapters=None):
    from ..core.decode import decode, mode_setup
    from ..core.link import LinkEmulator
    from ..core.models.synthetic import MixtureDraft
    target, draft_model, prompt, answer = models
    draft = MixtureDraft(draft_model, agreement, seed=3, reference=answer,
                         prompt_length=prompt.input_ids.shape[1])
    params, config = mode_setup(mode, args.block_size, args.tokens)
    one_way = args.rtt_ms / 2000.0
    exit_layer = args.exit_layer if args.exit_layer is not None else target.num_layers // 2 - 1
    out = decode(target, draft, prompt, params, costs=costs, edge_config=config,
                 exit_layers=[exit_layer], exit_adapters=exit_adapters,
                 uplink=LinkEmulator(one_way, seed=1),
                 downlink=LinkEmulator(one_way, seed=2))
    if out.tokens != answer[: len(out.tokens)] or len(out.tokens) != args.tokens:
        raise RuntimeError(f"{mode}: output differs from the target's greedy answer")
    return out.stats


def exit_overhead(adapter, layer: int, k: int, repeats: int, candidate_top=None,
                  prompt_length: int = 32) -> dict:
    """Median time of a k-token verification pass with and without an exit at `layer`."""
    import torch
    from ..core.models.base import Prompt
    from ..core.protocol import DecodingParams
    from ..core.sampling import RandomStream
    from ..core.sequence import Sequence
    from ..core.target_pass import TargetPass
    from ..core.verdict import VerdictRule
    g = torch.Generator().manual_seed(0)
    prompt = Prompt(torch.randint(0, adapter.vocab_size, (1, prompt_length), generator=g))
    block = torch.randint(0, adapter.vocab_size, (k,), generator=g).tolist()
    rule = VerdictRule(DecodingParams(), RandomStream(0, 0))
    seq = Sequence(adapter, prompt)
    variants = {name: TargetPass.with_layers(adapter, layers, candidate_top=top)
                for name, layers, top in (("none", [], None), ("full_vocab", [layer], None),
                                          ("candidates", [layer], candidate_top or 64))}
    candidates = {name: v.new_candidates() for name, v in variants.items()}
    times = {name: [] for name in variants}
    for _ in range(repeats):                  # interleaved, so load drifts hit all alike
        for name, verifier in variants.items():
            t0 = time.perf_counter()
            verifier.verify(seq, block, rule, 0, on_early=lambda *_: None,
                            candidates=candidates[name])
            times[name].append(time.perf_counter() - t0)
            seq.settle([])
    result = {name: _fast_median(t) for name, t in times.items()}
    base = result["none"]
    return {"verify_s": base, "full_vocab_overhead": result["full_vocab"] / base - 1.0,
            "candidate_overhead": result["candidates"] / base - 1.0, "layer": layer, "k": k}


def _smollm2(path: str):
    from transformers import AutoModelForCausalLM
    from ..core.models.causal_lm import CausalLMAdapter
    from ..core.models.gguf import ensure_safetensors
    with blame(f"--smollm2 {path}"):
        model = AutoModelForCausalLM.from_pretrained(ensure_safetensors(path), dtype="float32")
    return CausalLMAdapter(model.eval())


def _draft_label(row: dict) -> str:
    if row["mode"] in BASELINES:
        return "none"
    return "agree" if row["agreement"] else "never"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = results["rows"]
    names = [f"{r['mode']}\n{_draft_label(r)}" for r in rows]
    values = [1000 * r["time_per_token_s"] for r in rows]
    colors = ["tab:gray" if r["mode"] in BASELINES else
              ("tab:green" if r["agreement"] else "tab:red") for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.bar(range(len(rows)), values, color=colors)
    ax.set_xticks(range(len(rows)), names, fontsize=7)
    ax.set_ylabel("ms per token (median)")
    ax.set_title(f"time per token, {results['config']['rtt_ms']:.0f} ms round trip "
                 f"(grey: cloud-only baselines; green: draft always agrees; red: never)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_exit(models, layer: int, args):
    """Distil the exit adapter on the request's own greedy path (see --exit-train-steps)."""
    from ..core import exit_training
    target, _, prompt, _ = models
    features = exit_training.collect(target, [prompt], [layer], args.tokens)
    adapters = exit_training.train(target, features, steps=args.exit_train_steps, lr=3e-3)
    before = exit_training.agreement(target, features)[layer]
    after = exit_training.agreement(target, features, adapters)[layer]
    return adapters, {"before": before, "after": after}


def compare_modes(args, models, calibrated: bool, exit_adapters=None) -> tuple[list, list]:
    """Every case once per repeat, each repeat under its own calibration (or measured): the
    rows (medians over repeats; each ratio to streaming of the same repeat with its min and
    max) and the costs of each repeat."""
    from tqdm import tqdm
    cases = list(_cases(args))
    runs: dict[tuple, list] = {case: [] for case in cases}
    all_costs = []
    with tqdm(total=len(cases) * args.repeats, desc="bench", unit="request") as bar:
        for _ in range(args.repeats):
            costs = calibrate(models, args.block_size) if calibrated else None
            all_costs.append(costs)
            for mode, agreement in cases:
                runs[mode, agreement].append(run_case(mode, agreement, models, args, costs,
                                                      exit_adapters))
                bar.update()
    stream = runs["stream", 1.0]
    rows = []
    for (mode, agreement), stats in runs.items():
        med = lambda f: statistics.median(getattr(s, f) for s in stats)  # noqa: E731
        ratios = [s.time_per_token_s / b.time_per_token_s for s, b in zip(stats, stream)]
        rows.append(dict(mode=mode, agreement=agreement,
                         time_per_token_s=med("time_per_token_s"),
                         vs_stream=statistics.median(ratios), vs_stream_min=min(ratios),
                         vs_stream_max=max(ratios),
                         total_s=med("total_s"), ttft_s=med("time_to_first_token_s"),
                         target_passes_per_token=med("target_passes_per_token"),
                         mean_accepted=med("mean_accepted_per_round"),
                         early_hit_rate=med("early_hit_rate"),
                         draft_s=med("draft_s"), verify_s=med("verify_s"),
                         link_s=med("link_s"), idle_s=med("idle_s")))
    return rows, all_costs


def print_table(rows: list[dict]) -> None:
    print(f"\n{'mode':12s} {'draft':6s} {'ms/token':>9s} {'vs stream (min-max)':>20s} "
          f"{'passes/tok':>10s} {'accepted':>8s} {'early hit':>9s}")
    for r in rows:
        spread = f"{r['vs_stream']:.2f} ({r['vs_stream_min']:.2f}-{r['vs_stream_max']:.2f})"
        print(f"{r['mode']:12s} {_draft_label(r):6s} "
              f"{1000 * r['time_per_token_s']:9.2f} {spread:>20s} "
              f"{r['target_passes_per_token']:10.2f} {r['mean_accepted']:8.2f} "
              f"{r['early_hit_rate']:9.2f}")


def run(args) -> int:
    import torch
    torch.set_num_threads(1)
    if args.exit_layer is not None and args.exit_layer >= args.target[1] - 1:
        raise UserError(f"--exit-layer {args.exit_layer}: the target's exits lie in "
                        f"0..{args.target[1] - 2}")
    models = _models(args)
    target = models[0]
    layer = args.exit_layer if args.exit_layer is not None else target.num_layers // 2 - 1
    costs: list = []
    rows: list[dict] = []
    if not args.overhead_only:
        adapters, agreement = train_exit(models, layer, args) if args.exit_train_steps else (None, None)
        if agreement is not None:
            print(f"exit layer {layer} agreement with the last layer on the request: "
                  f"{agreement['before']:.2f} untrained, {agreement['after']:.2f} trained")
        rows, costs = compare_modes(args, models, args.clock == "calibrated", adapters)
        for c in filter(None, costs):
            print(f"calibrated: target pass {1000 * c.target_pass:.2f} ms + "
                  f"{1000 * c.target_token:.2f} ms/position, draft step "
                  f"{1000 * c.draft_pass:.2f} ms")
    overhead = {"tiny_target": exit_overhead(target, layer, args.block_size, 21)}
    if args.smollm2:
        print("loading", args.smollm2)
        smol = _smollm2(args.smollm2)
        overhead["smollm2"] = exit_overhead(smol, smol.num_layers // 2, args.block_size, 9)
    results = dict(config=dict(rtt_ms=args.rtt_ms, tokens=args.tokens, k=args.block_size,
                               repeats=args.repeats, target="%dx%d" % args.target,
                               draft="%dx%d" % args.draft,
                               vocab=args.vocab, exit_layer=layer, threads=1,
                               clock=args.clock,
                               costs=[vars(c) for c in costs if c is not None],
                               exit_train_steps=args.exit_train_steps),
                   rows=rows, exit_overhead=overhead)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    if rows:
        plot(results, out / "bench.png")
        print_table(rows)
    for name, o in overhead.items():
        print(f"exit overhead ({name}, layer {o['layer']}, k={o['k']}): verify "
              f"{1000 * o['verify_s']:.1f} ms, full-vocab exit +{100 * o['full_vocab_overhead']:.1f}%,"
              f" candidate exit +{100 * o['candidate_overhead']:.1f}%")
    print(f"wrote {out / 'bench.json'}" + (f" and {out / 'bench.png'}" if rows else ""))
    return 0
