"""Where each decoding mode wins: the core's own engine run on a cost model.

A prediction is not a formula: it runs the real EdgeSession and CloudVerifier (core/decode.py)
in virtual time, every target pass charged `pass_s + per_position_s * positions` and every
draft step `draft_s` (ManualClock + CostedAdapter), across a link of a fixed round trip. Only
the models are stand-ins whose outputs are set by two probabilities:

- acceptance: the draft proposes the target's token at each position with this probability
  (models/synthetic.py MixtureDraft, coin keyed by seed and position);
- exit hit: an early verdict equals the final one with this probability. The scripted target
  hands its exit layer, per pass, either its final logits (a hit: the exit head's verdict is
  the final verdict) or logits whose argmax is wrong at every position (a miss: the early
  verdict rejects or corrects at the first position, which the final verdict never does the
  same way). The exit head and the verifier are the core's own; the exit layer sits at
  `exit_fraction` of the pass, so the early verdict is stamped there.

Time per decision is the edge's `total_s` for a request of `tokens` tokens (prefill included);
the median over seeds is reported, since agreement and exit hits come in runs.
"""
from __future__ import annotations

import hashlib
import statistics
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable, Optional

import torch

from .decode import Costs, decode, mode_setup
from .link import LinkEmulator
from .models.base import DecoderAdapter, OnLayer, Prompt, SequenceState
from .models.synthetic import MixtureDraft

MODES = ("plain", "early_exit", "preemptive", "pipelined", "cloud_led")
BASELINES = ("stream", "per_token")   # cloud-only streaming; one request per token
LAYERS = 20                           # scripted target depth: exits at 5% steps of a pass
VOCAB = 64
EOS = 1
LONG_S = 1e6


@dataclass(frozen=True)
class Regime:
    """One deployment, in seconds; the decision is `tokens` tokens long."""

    draft_s: float
    pass_s: float
    per_position_s: float
    rtt_s: float
    acceptance: float
    exit_hit: float
    k: int = 4
    tokens: int = 8
    exit_fraction: float = 0.5
    prompt_positions: int = 24
    draft_per_position_s: float = 0.0     # a draft pass: draft_s + this x positions fed

    def costs(self) -> Costs:
        return Costs(target_pass=self.pass_s, target_token=self.per_position_s,
                     draft_pass=self.draft_s, draft_token=self.draft_per_position_s)


def _coin(seed: int, key: int) -> float:
    digest = hashlib.blake2b(f"exit:{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0 ** 64


def answer_token(index: int) -> int:
    """The target's greedy token at generated position `index` (never EOS or 0)."""
    return 2 + (7 * index + 3) % (VOCAB - 2)


class ScriptedTarget(DecoderAdapter):
    """A target with a fixed greedy answer and no network. Its hidden size is the vocabulary
    and its norm and LM head are identities, so the hidden state it gives its exit layer *is*
    that exit's logits: the final logits with probability `exit_hit` per pass, else the same
    logits with every argmax moved to another token."""

    def __init__(self, exit_hit: float = 1.0, seed: int = 0):
        self.num_layers, self.hidden_size, self.vocab_size = LAYERS, VOCAB, VOCAB
        self.eos_token_ids = frozenset({EOS})
        self.dtype, self.device = torch.float32, torch.device("cpu")
        self.norm, self.lm_head = torch.nn.Identity(), torch.nn.Identity()
        self.exit_hit, self.seed = exit_hit, seed
        self.prompt_length = 0
        self.passes = 0

    def fingerprint(self) -> str:
        return f"scripted-vocab-{VOCAB}"

    def prefill(self, prompt: Prompt) -> SequenceState:
        ids = prompt.input_ids[0].tolist()
        self.prompt_length = len(ids)
        return SequenceState(cache=None, cache_length=len(ids) - 1, pending=ids[-1])

    def extend(self, state: SequenceState, tokens: list[int],
               on_layer: Optional[OnLayer] = None) -> torch.Tensor:
        rows = len(tokens) + 1
        first = state.cache_length + 1 - self.prompt_length    # generated index of row 0
        logits = torch.zeros(rows, VOCAB)
        logits[torch.arange(rows), [answer_token(first + i) for i in range(rows)]] = 10.0
        self.passes += 1
        if on_layer is not None:
            hit = _coin(self.seed, self.passes) < self.exit_hit
            early = logits if hit else logits.roll(1, dims=1)
            for layer in range(self.num_layers):
                on_layer(layer, early if layer < self.num_layers - 1 else logits)
        state.cache_length += rows
        state.pending = tokens[-1] if tokens else state.pending
        return logits

    def crop(self, state: SequenceState, cache_length: int, pending: int) -> None:
        state.cache_length, state.pending = cache_length, int(pending)


def run(regime: Regime, mode: str, seed: int, measured: bool = False):
    """One decision in `mode` (a mode or a baseline): its RequestStats. measured=True
    charges wall time instead of the cost model: with these stand-ins, almost only the
    engine's own work (the part of a real run the cost model leaves out)."""
    target = ScriptedTarget(regime.exit_hit, seed)
    draft = MixtureDraft(ScriptedTarget(seed=seed), regime.acceptance, seed=seed)
    prompt = Prompt(torch.arange(2, 2 + regime.prompt_positions).remainder(VOCAB - 2)
                    .add(2).unsqueeze(0))
    params, config = mode_setup(mode, regime.k, regime.tokens)
    # the link is lossless: a resend or deadline would only fire on a slow pass, spuriously
    config = replace(config, resend_after_s=LONG_S, deadline_s=LONG_S)
    layer = max(0, round(regime.exit_fraction * LAYERS) - 1)
    one_way = regime.rtt_s / 2
    out = decode(target, draft, prompt, params, costs=None if measured else regime.costs(),
                 edge_config=config,
                 exit_layers=[layer], uplink=LinkEmulator(one_way, seed=1),
                 downlink=LinkEmulator(one_way, seed=2))
    expected = [answer_token(i) for i in range(regime.tokens)]
    if out.tokens != expected:
        raise RuntimeError(f"{mode}: the decision differs from the target's answer")
    return out.stats


def predict(regime: Regime, seeds: Iterable[int] = range(5),
            modes: Iterable[str] = MODES + BASELINES) -> dict[str, dict]:
    """Per mode: medians over seeds of time per decision and per token, target passes per
    token, accepted tokens per round and the early-verdict hit rate."""
    result = {}
    for mode in modes:
        stats = [run(regime, mode, seed) for seed in seeds]
        med = lambda f: statistics.median(f(s) for s in stats)  # noqa: E731
        result[mode] = dict(decision_s=med(lambda s: s.total_s),
                            token_s=med(lambda s: s.time_per_token_s),
                            ttft_s=med(lambda s: s.time_to_first_token_s),
                            passes_per_token=med(lambda s: s.target_passes_per_token),
                            accepted_per_round=med(lambda s: s.mean_accepted_per_round),
                            early_hit_rate=med(lambda s: s.early_hit_rate))
    return result


def winner(prediction: dict[str, dict]) -> str:
    """The fastest per decision; ties (within 1 µs) go to fewer target passes per token."""
    return min(prediction, key=lambda m: (round(prediction[m]["decision_s"], 6),
                                          prediction[m]["passes_per_token"]))


def regime_map(base: Regime, rtts_s: list[float], passes_s: list[float],
               seeds: Iterable[int] = range(3),
               progress: Optional[Callable[[], None]] = None) -> dict:
    """Winner per decision for each (round trip, target pass time) cell; other parameters
    from `base`. cells[i][j] is rtts_s[i] x passes_s[j]."""
    seeds = list(seeds)
    cells = []
    for rtt in rtts_s:
        row = []
        for pass_s in passes_s:
            prediction = predict(replace(base, rtt_s=rtt, pass_s=pass_s), seeds)
            row.append(dict(winner=winner(prediction),
                            decision_s={m: p["decision_s"] for m, p in prediction.items()}))
            if progress:
                progress()
        cells.append(row)
    return dict(base=asdict(base), rtt_s=list(rtts_s), pass_s=list(passes_s), seeds=seeds,
                cells=cells)
