"""Speculative sampling is lossless: at every generated position, including the one right
after a rejection, the engine's tokens follow the target's conditional distribution (a
chi-square test with fixed seeds), and a deliberately broken rule fails the same test.

The models are lookup tables (next-token logits from the position and the previous token),
so thousands of end-to-end requests take seconds and every conditional is known exactly.
"""
from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from spec_vlm_control.core.decode import build, run_request
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.models.base import DecoderAdapter, Prompt, SequenceState
from spec_vlm_control.core.protocol import MODES, DecodingParams, Verdict
from spec_vlm_control.core.sampling import RandomStream, dense, sample, truncate
from spec_vlm_control.core.verdict import Judgement, VerdictRule

pytestmark = pytest.mark.slow  # thousands of requests per chi-square test (6-11 s each)

VOCAB, NEW, K = 4, 4, 2
PROMPT = Prompt(torch.tensor([[0, 3, 2]]))


class TableModel(DecoderAdapter):
    """logits of the token at sequence position n = table[n][previous token]."""

    def __init__(self, seed: int, spread: float):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(16, VOCAB, VOCAB, generator=g, dtype=torch.float64) * spread
        self.num_layers, self.hidden_size, self.vocab_size = 1, 1, VOCAB
        self.eos_token_ids, self.dtype, self.device = frozenset(), torch.float64, torch.device("cpu")

    def fingerprint(self) -> str:
        return "table"

    def prefill(self, prompt: Prompt) -> SequenceState:
        ids = prompt.input_ids[0].tolist()
        return SequenceState(cache=ids[:-1], cache_length=len(ids) - 1, pending=ids[-1])

    def extend(self, state, tokens, on_layer=None):
        fed = [state.pending, *tokens]
        first = state.cache_length
        state.cache = state.cache + fed
        state.cache_length += len(fed)
        if on_layer is not None:                 # lets a cost model charge the pass
            on_layer(0, torch.zeros(len(fed), 1, dtype=torch.float64))
        return torch.stack([self.table[first + i + 1, t] for i, t in enumerate(fed)])

    def crop(self, state, cache_length, pending):
        state.cache = state.cache[:cache_length]
        state.cache_length, state.pending = cache_length, pending

    def probs(self, position: int, previous: int) -> torch.Tensor:
        """Target distribution of generated position `position` after token `previous`."""
        return torch.softmax(self.table[PROMPT.input_ids.shape[1] + position, previous], -1)


class ResampleFromTarget(VerdictRule):
    """A classic bug: on rejection, draw from p instead of the residual (p - q)+."""

    def _sampled(self, p, block, q, start):
        for i, d in enumerate(block):
            if self.stream.uniform(start + i, 0) < min(1.0, float(p[i, d] / q[i, d])):
                continue
            return Judgement(i, sample(p[i], self.stream.uniform(start + i, 1)), 1.0)
        return Judgement(len(block), sample(p[len(block)], self.stream.uniform(start + len(block), 1)), 1.0)


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = counts.sum()
    expected = n * probs
    stat = ((counts - expected) ** 2 / expected).sum()
    df = torch.tensor((len(probs) - 1) / 2.0, dtype=torch.float64)
    return float(torch.special.gammaincc(df, stat / 2))


def sampled_tokens(rule, runs: int, top_m: int, mode: str):
    """Decode `runs` requests; per (position, previous token, after-a-rejection?) counts."""
    target, draft = TableModel(0, 1.5), TableModel(1, 1.5)       # q clearly differs from p
    counts = defaultdict(lambda: torch.zeros(VOCAB, dtype=torch.float64))
    for seed in range(runs):
        params = DecodingParams(mode=MODES[mode], block_size=K, max_new_tokens=NEW,
                                temperature=1.0, seed=seed)
        edge, cloud = build(target, draft, PROMPT, params, rule=rule,
                            edge_config=EdgeConfig(draft_top_m=top_m))
        corrections = set()
        receive = edge.receive

        def record(m):
            if isinstance(m, Verdict) and m.stage == Verdict.STAGE_FINAL \
                    and m.accepted < m.block_length:
                corrections.add(m.assumed_length + m.accepted)
            receive(m)
        edge.receive = record
        tokens = run_request(edge, cloud).tokens
        assert len(tokens) == NEW
        previous = PROMPT.input_ids[0, -1].item()
        for position, token in enumerate(tokens):
            after_rejection = position - 1 in corrections
            counts[(position, previous, after_rejection)][token] += 1
            counts[(position, previous, None)][token] += 1
            previous = token
    return target, counts


def pvalues(rule, runs=2000, top_m=32, mode="plain"):
    target, counts = sampled_tokens(rule, runs, top_m, mode)
    out = {}
    for (position, previous, flag), c in counts.items():
        if c.sum() >= 150:
            out[(position, previous, flag)] = chi_square_pvalue(c, target.probs(position, previous))
    return out


@pytest.mark.parametrize("mode,top_m", [("plain", 32), ("plain", 2), ("pipelined", 32),
                                         ("cloud_led", 2)])   # top_m 2: q truncated, sparse
def test_every_position_follows_the_target_distribution(mode, top_m):
    torch.set_num_threads(1)
    p = pvalues(VerdictRule, top_m=top_m, mode=mode)
    assert {pos for pos, _, _ in p} == set(range(NEW))
    if mode != "cloud_led":
        assert any(flag is True for _, _, flag in p)   # positions right after a rejection
    assert min(p.values()) > 1e-3 / len(p), sorted(p.items(), key=lambda kv: kv[1])[:3]


def test_a_broken_acceptance_rule_fails_the_same_test():
    torch.set_num_threads(1)
    p = pvalues(ResampleFromTarget)
    assert min(p.values()) < 1e-6


def test_the_rule_alone_matches_p_at_every_block_position():
    """Verdict rule against fixed p and q rows: the emitted token at block position i, given
    the block got that far, is distributed as p_i (incl. the bonus position k)."""
    g = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(K + 2, VOCAB, generator=g, dtype=torch.float64) * 1.5, -1)
    q = torch.softmax(torch.randn(K + 1, VOCAB, generator=g, dtype=torch.float64) * 1.5, -1)
    params = DecodingParams(temperature=1.0)
    counts = torch.zeros(K + 2, VOCAB, dtype=torch.float64)
    for seed in range(6000):
        stream = RandomStream(seed, 0)
        block = [sample(q[i], stream.uniform(i, 2)) for i in range(K + 1)]
        j = VerdictRule(params, stream).judge(p.log(), block, q, 0)
        for i, token in enumerate(j.committed(block)):
            counts[i, token] += 1
    for i in range(K + 2):
        assert chi_square_pvalue(counts[i], p[i]) > 1e-3, i


def test_sparse_q_round_trips():
    q = torch.softmax(torch.randn(2, 10, dtype=torch.float64), -1)
    rows = [truncate(q[i], 3) for i in range(2)]
    back = dense([3, 3], [t for ids, _ in rows for t in ids.tolist()],
                 [x for _, pr in rows for x in pr.tolist()], 10)
    for i, (ids, probs) in enumerate(rows):
        assert torch.allclose(back[i, ids], probs) and back[i].sum() == pytest.approx(1.0)
