"""`spec-vlm plan`: predict each decoding mode's time per token and per decision from a few
component times, against cloud-only streaming and one request per token, and map which mode
wins over round trip x target pass time.

The prediction runs the core's own engine in virtual time on a cost model (core/regimes.py):
the real edge and cloud code, stand-in models whose draft acceptance and exit hit rate are
the given probabilities. `--validate` checks it against `--clock measured` runs of bench's
model pair (agreement 0.7, RTT 10 and 120 ms) with costs calibrated on this machine;
`--validate-live DIR` against the live decisions of a `spec-vlm bench-link` run (the demo
pair through the edge, both bridges and the cloud as processes).
"""
from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, replace
from pathlib import Path

from . import count, number

MS = 1000.0
VALIDATION_RTTS_MS = (10.0, 120.0)
VALIDATION_AGREEMENT = 0.7
LIVE_SEED_FACTOR = 4        # --validate-live runs this many times --seeds per decision


def _ms_list(text: str) -> list[float]:
    import argparse
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of ms") from None
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: every value must be >= 0")
    return values


def configure(parser) -> None:
    probability = number(float, 0.0, 1.0)
    ms = number(float, 0.0)
    parser.add_argument("--draft-ms", type=ms, default=2.0, help="one draft step on the edge")
    parser.add_argument("--pass-ms", type=ms, default=10.0,
                        help="a target pass, fixed part (cloud)")
    parser.add_argument("--per-position-ms", type=ms, default=0.5,
                        help="a target pass, per position fed")
    parser.add_argument("--rtt-ms", type=ms, default=50.0, help="round trip of the link")
    parser.add_argument("--acceptance", type=probability, default=0.7,
                        help="probability the draft proposes the target's token (per position)")
    parser.add_argument("--exit-hit", type=probability, default=0.8,
                        help="probability an early verdict equals the final one (per pass)")
    parser.add_argument("--exit-fraction", type=number(float, 0.0, 1.0, low_open=True),
                        default=0.5, help="where in a target pass the exit layer sits")
    parser.add_argument("-k", "--block-size", type=count(), default=4)
    parser.add_argument("--tokens", type=count(), default=8, help="tokens per decision")
    parser.add_argument("--prompt-positions", type=count(), default=24,
                        help="prompt length (prefill cost: pass + per position x this)")
    parser.add_argument("--seeds", type=count(), default=5, help="median over this many")
    parser.add_argument("--out", default="plan", help="output folder (JSON, PNG)")
    parser.add_argument("--map", action="store_true",
                        help="also map the winner over --map-rtt-ms x --map-pass-ms")
    parser.add_argument("--map-rtt-ms", type=_ms_list, default="0,10,25,50,100,200,400")
    parser.add_argument("--map-pass-ms", type=_ms_list, default="2,5,10,20,50,100,200,600")
    parser.add_argument("--validate", action="store_true",
                        help="instead: predict vs measure bench's pair (agreement 0.7, "
                             "RTT 10 and 120 ms; slow, real models)")
    parser.add_argument("--validate-live", default=None, metavar="DIR",
                        help="instead: predict each live decision of the `spec-vlm "
                             "bench-link` run in DIR (its link_bench.json) and compare")


def regime(args):
    from ..core.regimes import Regime
    return Regime(draft_s=args.draft_ms / MS, pass_s=args.pass_ms / MS,
                  per_position_s=args.per_position_ms / MS, rtt_s=args.rtt_ms / MS,
                  acceptance=args.acceptance, exit_hit=args.exit_hit, k=args.block_size,
                  tokens=args.tokens, exit_fraction=args.exit_fraction,
                  prompt_positions=args.prompt_positions)


def print_prediction(prediction: dict) -> None:
    stream = prediction["stream"]["decision_s"]
    print(f"{'mode':11s} {'ms/decision':>11s} {'ms/token':>9s} {'vs stream':>9s} "
          f"{'passes/tok':>10s} {'accepted':>8s} {'exit hit':>8s}")
    for mode, p in prediction.items():
        print(f"{mode:11s} {MS * p['decision_s']:11.1f} {MS * p['token_s']:9.2f} "
              f"{p['decision_s'] / stream:9.2f} {p['passes_per_token']:10.2f} "
              f"{p['accepted_per_round']:8.2f} {p['early_hit_rate']:8.2f}")


def plot_map(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from ..core.regimes import BASELINES, MODES
    names = list(MODES + BASELINES)
    colors = ["tab:blue", "tab:cyan", "tab:orange", "tab:red", "tab:green", "tab:gray",
              "black"]
    grid = [[names.index(c["winner"]) for c in row] for row in result["cells"]]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.imshow(grid, cmap=ListedColormap(colors), vmin=-0.5, vmax=len(names) - 0.5,
              origin="lower", aspect="auto")
    for i, row in enumerate(result["cells"]):
        for j, cell in enumerate(row):
            best = cell["decision_s"][cell["winner"]] / cell["decision_s"]["stream"]
            ax.text(j, i, f"{cell['winner']}\n{best:.2f}x", ha="center", va="center",
                    fontsize=6, color="white")
    ax.set_xticks(range(len(result["pass_s"])), [f"{MS * p:g}" for p in result["pass_s"]])
    ax.set_yticks(range(len(result["rtt_s"])), [f"{MS * r:g}" for r in result["rtt_s"]])
    ax.set_xlabel("target pass (ms, fixed part)")
    ax.set_ylabel("round trip (ms)")
    b = result["base"]
    ax.set_title(f"fastest per decision (x = its time / streaming's); draft {MS * b['draft_s']:g}"
                 f" ms, acceptance {b['acceptance']:g}, exit hit {b['exit_hit']:g}, "
                 f"k={b['k']}, {b['tokens']} tokens", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def make_map(args, base) -> dict:
    from tqdm import tqdm
    from ..core.regimes import regime_map
    rtts = [r / MS for r in args.map_rtt_ms]
    passes = [p / MS for p in args.map_pass_ms]
    with tqdm(total=len(rtts) * len(passes), desc="map", unit="cell") as bar:
        return regime_map(base, rtts, passes, range(min(args.seeds, 3)), bar.update)


def calibrate(target, draft, prompt, exit_layer: int, k: int, repeats: int = 100):
    """Costs of the engine's units of work on this machine (bench.calibrate times bare model
    passes; here what the cloud and edge run): a verification with its exit head and verdict
    rule = a + b * positions, and a draft step through the agreement wrapper = c. The three
    are timed in turn, so load drifts hit all alike; fast-half medians."""
    import time
    from ..core.decode import Costs
    from ..core.protocol import DecodingParams
    from ..core.sampling import RandomStream
    from ..core.sequence import Sequence
    from ..core.target_pass import TargetPass
    from ..core.verdict import VerdictRule
    from .bench import _fast_median
    verifier = TargetPass.with_layers(target, [exit_layer])
    rule = VerdictRule(DecodingParams(), RandomStream(0, 0))
    cloud, edge = Sequence(target, prompt), Sequence(draft, prompt)
    work = {"one": (cloud, lambda: verifier.verify(cloud, [], rule, 0, on_early=lambda *_: None)),
            "many": (cloud, lambda: verifier.verify(cloud, list(range(2, k + 2)), rule, 0,
                                                    on_early=lambda *_: None)),
            "draft": (edge, lambda: edge.feed([]))}
    times = {name: [] for name in work}
    for _ in range(repeats):
        for name, (seq, unit) in work.items():
            t0 = time.perf_counter()
            unit()
            times[name].append(time.perf_counter() - t0)
            seq.settle([])
    one, many, step = (_fast_median(times[name]) for name in work)
    per_position = max(0.0, (many - one) / k)
    return Costs(target_pass=one - per_position, target_token=per_position, draft_pass=step,
                 draft_token=0.0)


def validate(args) -> dict:
    """Prediction (costs calibrated here) vs `--clock measured` runs of bench's pair, both
    over the same draft seeds, per-decision medians; exit hit rates taken from calibrated
    runs of the real models (a property of the exit, not of timing)."""
    import argparse
    import torch
    from tqdm import tqdm
    from ..core.decode import decode, mode_setup
    from ..core.link import LinkEmulator
    from ..core.models.synthetic import MixtureDraft
    from ..core.regimes import BASELINES, MODES, Regime, predict
    from ..core.regimes import run as run_regime
    from . import bench
    torch.set_num_threads(1)
    bench_args = argparse.ArgumentParser()
    bench.configure(bench_args)
    bargs = bench_args.parse_args([])
    models = bench._models(bargs)
    target, draft_model, prompt, answer = models
    layer = target.num_layers // 2 - 1
    seeds = range(args.seeds)
    modes = MODES + BASELINES
    load = os.getloadavg()

    def real(mode, rtt_s, seed, costs):
        draft = MixtureDraft(draft_model, VALIDATION_AGREEMENT, seed=seed, reference=answer,
                             prompt_length=prompt.input_ids.shape[1])
        params, config = mode_setup(mode, bargs.block_size, bargs.tokens)
        out = decode(target, draft, prompt, params, costs=costs, edge_config=config,
                     exit_layers=[layer], uplink=LinkEmulator(rtt_s / 2, seed=1),
                     downlink=LinkEmulator(rtt_s / 2, seed=2))
        if out.tokens != answer:
            raise RuntimeError(f"{mode}: output differs from the target's greedy answer")
        return out.stats

    mixture = MixtureDraft(draft_model, VALIDATION_AGREEMENT, seed=0, reference=answer,
                           prompt_length=prompt.input_ids.shape[1])
    rows = []
    calibrations = []
    with tqdm(total=len(VALIDATION_RTTS_MS) * len(modes) * len(seeds) * 2, desc="validate",
              unit="decision") as bar:
        for rtt_ms in VALIDATION_RTTS_MS:
            costs = calibrate(target, mixture, prompt, layer, bargs.block_size)
            calibrations.append(dict(rtt_ms=rtt_ms, **asdict(costs)))
            for mode in modes:
                hits, measured = [], []
                for seed in seeds:      # calibrated: the real exit's hit rate; measured: time
                    hits.append(real(mode, rtt_ms / MS, seed, costs).early_hit_rate)
                    bar.update()
                    measured.append(real(mode, rtt_ms / MS, seed, None).total_s)
                    bar.update()
                base = Regime(draft_s=costs.draft_pass, pass_s=costs.target_pass,
                              per_position_s=costs.target_token, rtt_s=rtt_ms / MS,
                              acceptance=VALIDATION_AGREEMENT,
                              exit_hit=statistics.median(hits), k=bargs.block_size,
                              tokens=bargs.tokens, exit_fraction=(layer + 1) / target.num_layers,
                              prompt_positions=prompt.input_ids.shape[1])
                predicted = predict(base, seeds, [mode])[mode]["decision_s"]
                m = statistics.median(measured)
                # what the cost model leaves out: the engine's own work, stand-ins at no cost
                free = replace(base, draft_s=0.0, pass_s=0.0, per_position_s=0.0)
                wall = statistics.median(run_regime(free, mode, seed, measured=True).total_s
                                         for seed in seeds)
                engine = wall - predict(free, seeds, [mode])[mode]["decision_s"]
                rows.append(dict(pair="bench", rtt_ms=rtt_ms, mode=mode, predicted_s=predicted,
                                 measured_s=m, error=predicted / m - 1.0,
                                 exit_hit=base.exit_hit, engine_s=engine))
    config = dict(pair="bench", target="%dx%d" % bargs.target, draft="%dx%d" % bargs.draft,
                  tokens=bargs.tokens, k=bargs.block_size, agreement=VALIDATION_AGREEMENT,
                  exit_layer=layer, seeds=list(seeds), threads=1, calibrations=calibrations,
                  cpus=os.cpu_count(), load_before=load, load_after=os.getloadavg())
    return dict(config=config, rows=rows)


def acceptance_of(mean_accepted: float, k: int) -> float:
    """The per-position agreement p whose rounds accept `mean_accepted` drafts on average
    (p + p^2 + ... + p^k: a round stops at the first disagreement), by bisection."""
    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        if sum(mid ** i for i in range(1, k + 1)) < mean_accepted:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def calibrate_pair(loaded, exit_layer: int, requests: list, k: int, repeats: int = 30) -> dict:
    """A loaded model pair's costs on this machine, one thread: `calibrate`'s verification
    pass and draft step on the first request's prompt, and each request's prefill on both
    sides (its image through the vision tower included; on the cloud's side also building
    the prompt from the request's bytes, which the cloud does after receiving it and the
    edge before it sends), fast-half medians."""
    from ..core.prompts import request_prompt
    from ..core.sequence import Sequence
    from ..fleet.workload import fast_time
    target, draft = loaded.target.adapter, loaded.draft.adapter
    prompts = [request_prompt(loaded.target.prompts, r) for r in requests]
    costs = calibrate(target, draft, prompts[0], exit_layer % target.num_layers, k, repeats)
    runs = repeats // 3
    return dict(costs=costs,
                target_prefill_s=[fast_time(lambda: Sequence(target, request_prompt(
                    loaded.target.prompts, r)), runs) for r in requests],
                draft_prefill_s=[fast_time(lambda: Sequence(draft, p), runs) for p in prompts],
                positions=[int(p.input_ids.shape[1]) for p in prompts])


def validate_live(args) -> dict:
    """Each measured decision of a `spec-vlm bench-link` run predicted by the cost model:
    the pair's costs calibrated here, the decision's own answer length and acceptance (from
    its RequestStats), the bench's mode, k and round trip; per variant the median predicted
    and measured decision time and their error, and each decision's error."""
    from ..core.protocol import DecodeRequest
    from ..core.regimes import Regime
    from ..core.regimes import run as run_regime
    from ..core.user_errors import UserError, blame
    from ..demo.pair import load_checked, open_pair
    from .link_bench import scenes
    path = Path(args.validate_live) / "link_bench.json"
    with blame(f"--validate-live {args.validate_live}"):
        report = json.loads(path.read_text())
    config = report["config"]
    if config["mode"] not in ("plain", "early_exit", "preemptive"):
        raise UserError(f"{path}: mode {config['mode']!r} has no live validation")
    pair = open_pair(config["models"])
    loaded = load_checked(pair, "fp32")
    requests = [DecodeRequest("robot", 1, instruction=text, image_data=jpeg,
                              image_format="jpeg") for jpeg, text in scenes()]
    k, rtt_s = config["block_size"], config["rtt_ms"] / MS
    calibration = calibrate_pair(loaded, (pair.exit_layers or [-1])[0], requests, k)
    costs = calibration["costs"]
    variants = {}
    cache: dict = {}
    for name, variant in report["variants"].items():
        rows = []
        for d in variant.get("decision_records", []):
            scene = d["scene"]
            # the prompt's measured prefill, as the positions the cost model charges for it
            positions = max(1, round((calibration["target_prefill_s"][scene] - costs.target_pass)
                                     / max(costs.target_token, 1e-9)))
            draft_per_position = max(0.0, (calibration["draft_prefill_s"][scene]
                                           - costs.draft_pass) / max(1, positions - 1))
            regime = Regime(draft_s=costs.draft_pass - draft_per_position,
                            pass_s=costs.target_pass, per_position_s=costs.target_token,
                            rtt_s=rtt_s, acceptance=acceptance_of(
                                d["mean_accepted_per_round"], k),
                            exit_hit=1.0, k=k, tokens=d["tokens"], prompt_positions=positions,
                            draft_per_position_s=draft_per_position)
            if regime not in cache:
                cache[regime] = [run_regime(regime, config["mode"], seed)
                                 for seed in range(args.seeds * LIVE_SEED_FACTOR)]
            runs = cache[regime]
            # acceptance is a coin per position: keep the seeds whose pattern took the
            # decision's own number of rounds (all of them if none did)
            matched = [r for r in runs if r.rounds == d["rounds"]]
            rows.append(dict(scene=scene, tokens=d["tokens"], rounds=d["rounds"],
                             acceptance=regime.acceptance,
                             predicted_s=statistics.median(r.total_s for r in matched or runs),
                             same_rounds=bool(matched), measured_s=d["total_s"]))
        if not rows:
            continue
        overhead_s = variant["summary"]["overhead"]["median_ms"] / MS
        predicted = statistics.median(r["predicted_s"] for r in rows)
        # the software's own time, which the cost model leaves out: the bench's measured
        # overhead per round trip, once per round the decision took
        with_overhead = statistics.median(r["predicted_s"] + overhead_s * r["rounds"]
                                          for r in rows)
        measured = statistics.median(r["measured_s"] for r in rows)
        errors = sorted(r["predicted_s"] / r["measured_s"] - 1.0 for r in rows)
        variants[name] = dict(decisions=len(rows), predicted_s=predicted, measured_s=measured,
                              error=predicted / measured - 1.0,
                              predicted_with_overhead_s=with_overhead,
                              error_with_overhead=with_overhead / measured - 1.0,
                              same_rounds=sum(r["same_rounds"] for r in rows) / len(rows),
                              decision_error_median=statistics.median(errors),
                              decision_error_p5_p95=[errors[int(0.05 * (len(errors) - 1))],
                                                     errors[int(0.95 * (len(errors) - 1))]],
                              overhead_per_round_trip_ms=MS * overhead_s,
                              # the target pass live (hop timeline) against the calibrated
                              # cost of a block of k, the positions a plain round verifies
                              live_pass_ms=variant["summary"]["pass"]["median_ms"],
                              calibrated_pass_ms=MS * (costs.target_pass
                                                       + costs.target_token * (k + 1)),
                              rows=rows)
    if not variants:
        raise UserError(f"{path}: no per-decision records (a bench-link run of an older "
                        "version?)")
    return dict(config=dict(link_bench=str(path), mode=config["mode"], k=k,
                            rtt_ms=config["rtt_ms"], models=config["models"],
                            seeds=args.seeds, threads=1, cpus=os.cpu_count(),
                            load=os.getloadavg(),
                            calibration=dict(asdict(costs), **{
                                key: calibration[key] for key in
                                ("target_prefill_s", "draft_prefill_s", "positions")})),
                variants=variants)


def print_validation_live(result: dict) -> None:
    c = result["config"]
    print(f"live decisions of {c['link_bench']} ({c['mode']}, k = {c['k']}, "
          f"{c['rtt_ms']:g} ms round trip), ms per decision, medians:")
    print(f"{'variant':20s} {'n':>4s} {'predicted':>9s} {'measured':>9s} {'error':>7s} "
          f"{'+ overhead':>10s} {'error':>7s} {'same rounds':>11s} "
          f"{'per decision (p5..p95)':>24s}")
    for name, v in result["variants"].items():
        low, high = v["decision_error_p5_p95"]
        print(f"{name:20s} {v['decisions']:4d} {MS * v['predicted_s']:9.1f} "
              f"{MS * v['measured_s']:9.1f} {100 * v['error']:+6.1f}% "
              f"{MS * v['predicted_with_overhead_s']:10.1f} "
              f"{100 * v['error_with_overhead']:+6.1f}% {100 * v['same_rounds']:10.0f}% "
              f"{100 * v['decision_error_median']:+7.1f}% ({100 * low:+.0f}..{100 * high:+.0f}%)")


def print_validation(result: dict) -> None:
    print(f"{'rtt ms':>6s} {'mode':11s} {'predicted':>9s} {'measured':>9s} {'error':>7s} "
          f"{'engine':>7s}")
    for r in result["rows"]:
        print(f"{r['rtt_ms']:6.0f} {r['mode']:11s} {MS * r['predicted_s']:9.1f} "
              f"{MS * r['measured_s']:9.1f} {100 * r['error']:+6.1f}% {MS * r['engine_s']:7.1f}")


def run(args) -> int:
    import torch
    torch.set_num_threads(1)     # tiny tensors: thread wake-ups would cost more than the math
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for wanted, check, show, name in ((args.validate_live, validate_live,
                                       print_validation_live, "validation_live.json"),
                                      (args.validate, validate, print_validation,
                                       "validation.json")):
        if wanted:
            result = check(args)
            (out / name).write_text(json.dumps(result, indent=2))
            show(result)
            print(f"wrote {out / name}")
            return 0
    from ..core.regimes import predict
    base = regime(args)
    prediction = predict(base, range(args.seeds))
    print_prediction(prediction)
    result = dict(config=asdict(base), seeds=args.seeds, prediction=prediction)
    (out / "plan.json").write_text(json.dumps(result, indent=2))
    written = [out / "plan.json"]
    if args.map:
        mapped = make_map(args, base)
        (out / "map.json").write_text(json.dumps(mapped, indent=2))
        plot_map(mapped, out / "map.png")
        written += [out / "map.json", out / "map.png"]
    print("wrote " + ", ".join(map(str, written)))
    return 0
