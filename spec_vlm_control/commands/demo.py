"""`spec-vlm demo`: one real decision through the decoding engine, on small VLMs built in code.

A tiny Qwen2-VL target (the cloud) and a draft sharing its tokenizer (the robot) decode the
answer to an image + instruction prompt over an emulated 50 ms round trip, in every mode of
the engine and as streaming cloud-only decoding, one thread, each unit of work charged its
real wall time. Every output is checked token for token against Hugging Face
`generate(do_sample=False)` on the target. The models are untrained, so the answer itself is
meaningless bytes; what the demo shows is the protocol: rounds, accepted tokens, early
verdicts, target passes per token, and time per token against the cloud-only baseline.

The draft is the tiny draft model steered to agree with the target on a set fraction of
positions (`--agreement`), since an untrained draft never agrees with an untrained target.
Writes demo.json and a latency timeline demo.png into --out.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

MODES = ("plain", "early_exit", "preemptive", "pipelined", "cloud_led")


def configure(parser) -> None:
    parser.add_argument("--out", default="demo_output", help="folder for demo.json and demo.png")
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="emulated round trip")
    parser.add_argument("--tokens", type=int, default=24, help="tokens of the decision")
    parser.add_argument("-k", "--block-size", type=int, default=4)
    parser.add_argument("--agreement", type=float, default=0.8,
                        help="fraction of positions where the draft proposes the target's token")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (median)")
    parser.add_argument("--seed", type=int, default=0)


def reference_answer(pair, tokens: int) -> list[int]:
    import torch
    ids = pair.prompt.input_ids
    with torch.inference_mode():
        out = pair.target.model.generate(
            input_ids=ids, mm_token_type_ids=(ids == pair.target.image_token_id).int(),
            **pair.prompt.vision, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens)
    return out[0, ids.shape[1]:].tolist()


def run_mode(pair, answer, mode: str, args):
    from ..core.decode import decode
    from ..core.edge import EdgeConfig
    from ..core.link import LinkEmulator
    from ..core.models.tiny import MixtureDraft
    from ..core.protocol import MODES as MODE_IDS, DecodingParams
    draft = MixtureDraft(pair.draft, args.agreement, seed=args.seed, reference=answer,
                         prompt_length=pair.prompt.input_ids.shape[1])
    config = EdgeConfig(drafting=mode != "stream")
    mode_id = MODE_IDS["cloud_led" if mode == "stream" else mode]
    params = DecodingParams(mode=mode_id, block_size=args.block_size, max_new_tokens=args.tokens)
    one_way = args.rtt_ms / 2000.0
    out = decode(pair.target, draft, pair.prompt, params, costs=None, edge_config=config,
                 exit_layers=[pair.target.num_layers // 2],
                 uplink=LinkEmulator(one_way, seed=1), downlink=LinkEmulator(one_way, seed=2))
    if out.tokens != answer:
        raise RuntimeError(f"{mode}: the output is not the target's own greedy answer")
    return out.stats


def plot(rows: list[dict], path: Path, rtt_ms: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (timeline, bars) = plt.subplots(1, 2, figsize=(12, 4.2))
    for row in rows:
        times, t = [], 0.0
        for gap in row["token_latencies_s"]:
            t += gap
            times.append(1000 * t)
        style = "k--" if row["mode"] == "stream" else "-"
        timeline.step(times, range(1, len(times) + 1), style, where="post", label=row["mode"])
    timeline.set_xlabel("time since the request (ms)")
    timeline.set_ylabel("verified tokens")
    timeline.set_title(f"when each token is verified ({rtt_ms:.0f} ms round trip)")
    timeline.legend(fontsize=8)
    names = [r["mode"] for r in rows]
    parts = ("verify_s", "draft_s", "link_s", "idle_s")
    bottom = [0.0] * len(rows)
    for part in parts:
        values = [1000 * r[part] / max(1, r["tokens"]) for r in rows]
        bars.bar(names, values, bottom=bottom, label=part[:-2])
        bottom = [b + v for b, v in zip(bottom, values)]
    bars.set_ylabel("ms per token")
    bars.set_title("where the time goes, per token")
    bars.tick_params(axis="x", labelsize=8, rotation=20)
    bars.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    import torch
    from ..core.models.tiny_vlm import tiny_qwen2vl_pair
    torch.set_num_threads(1)
    pair = tiny_qwen2vl_pair(args.seed, instruction="go to the red ball")
    answer = reference_answer(pair, args.tokens)
    print(f"target: tiny Qwen2-VL, {pair.target.num_layers} layers; draft "
          f"{pair.draft.num_layers} layers, agreeing on {args.agreement:.0%} of positions; "
          f"k={args.block_size}, {args.rtt_ms:.0f} ms round trip, one thread")
    print(f"target's own greedy answer ({args.tokens} tokens, untrained model): "
          f"{pair.tokenizer.decode(answer)!r}")
    rows = []
    for mode in ("stream",) + MODES:
        runs = [run_mode(pair, answer, mode, args) for _ in range(args.repeats)]
        best = sorted(runs, key=lambda s: s.total_s)[len(runs) // 2]
        med = lambda f: statistics.median(getattr(s, f) for s in runs)  # noqa: E731
        rows.append(dict(mode=mode, tokens=best.tokens, total_s=med("total_s"),
                         time_to_first_token_s=med("time_to_first_token_s"),
                         mean_accepted_per_round=med("mean_accepted_per_round"),
                         early_hit_rate=med("early_hit_rate"),
                         target_passes_per_token=med("target_passes_per_token"),
                         verify_s=med("verify_s"), draft_s=med("draft_s"), link_s=med("link_s"),
                         idle_s=med("idle_s"), token_latencies_s=best.token_latencies_s,
                         lossless=True))
    stream = rows[0]["total_s"]
    print(f"\n{'mode':11s} {'first token':>11s} {'total':>9s} {'vs stream':>9s} "
          f"{'accepted/round':>14s} {'early hit':>9s} {'passes/token':>12s}")
    for r in rows:
        print(f"{r['mode']:11s} {1000 * r['time_to_first_token_s']:9.1f}ms "
              f"{1000 * r['total_s']:7.1f}ms {r['total_s'] / stream:9.2f} "
              f"{r['mean_accepted_per_round']:14.2f} {r['early_hit_rate']:9.2f} "
              f"{r['target_passes_per_token']:12.2f}")
    print("every mode's output equals the target's own greedy decoding (checked)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    (out / "demo.json").write_text(json.dumps(dict(config=config, answer=answer, rows=rows),
                                              indent=2))
    plot(rows, out / "demo.png", args.rtt_ms)
    print(f"wrote {out / 'demo.json'} and {out / 'demo.png'}")
    return 0
