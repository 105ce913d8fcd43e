"""Greedy losslessness: every mode's output equals HF generate(do_sample=False) on the target,
for 50 seeds x k in {1, 3, 5} x 5 modes per model family, with drafts of controlled
agreement, plus coverage asserts so that the paths that could break were really taken.
The full matrix is slow; the fast tier runs its k = 3 row on one seed per draft agreement."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from engine_pairs import AGREEMENTS, MAX_NEW, PAIR_FACTORIES
from spec_vlm_control.core.decode import decode
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.protocol import MODES, DecodingParams

SEEDS = range(50)
FAST_SEEDS = range(len(AGREEMENTS))   # one seed per draft agreement
EXIT_LAYER = 0               # an early exit half-way through the 2-layer targets
# shallower pipelines and draft chains than the defaults keep the matrix fast; the
# mechanisms (several blocks in flight, chains beyond the cloud frontier) are the same
EDGE = EdgeConfig(pipeline_depth=3, lead_blocks=1)


def run_seeds(factory, mode: int, k: int, seeds: range):
    torch.set_num_threads(1)
    totals = Counter()
    accepted = Counter()
    for seed in seeds:
        pair = factory(seed)
        draft = pair.draft(AGREEMENTS[seed % len(AGREEMENTS)], seed)
        params = DecodingParams(mode=mode, block_size=k, max_new_tokens=MAX_NEW, seed=seed)
        out = decode(pair.target, draft, pair.prompt, params, exit_layers=[EXIT_LAYER],
                     edge_config=EDGE)
        assert out.stats.ok, out.stats.error
        assert out.tokens == pair.reference, f"seed {seed}: {out.tokens} != {pair.reference}"
        s = out.stats
        accepted.update(out.edge.tally.accepted_counts)
        totals.update(hits=s.preemptive_hits, misses=s.preemptive_misses,
                      early=s.early_verdicts, stale=out.cloud_counts.get("stale", 0),
                      rounds=s.rounds, passes=s.target_passes, tokens=s.tokens)
    return totals, accepted


@pytest.mark.parametrize("family", sorted(PAIR_FACTORIES))
@pytest.mark.parametrize("k, seeds", [
    *(pytest.param(k, SEEDS, id=str(k), marks=pytest.mark.slow) for k in (1, 3, 5)),
    pytest.param(3, FAST_SEEDS, id=f"3-{len(FAST_SEEDS)}seeds"),
])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_greedy_output_is_the_targets(family, mode, k, seeds):
    totals, accepted = run_seeds(PAIR_FACTORIES[family], MODES[mode], k, seeds)
    if mode != "cloud_led":
        assert set(range(k + 1)) <= set(accepted), f"accepted counts seen: {sorted(accepted)}"
    if mode in ("early_exit", "preemptive", "pipelined"):
        assert totals["early"] > 0
    else:
        assert totals["early"] == 0
    if mode == "preemptive":
        assert totals["hits"] > 0 and totals["misses"] > 0, totals
    if mode == "pipelined":
        assert totals["hits"] > 0 and totals["stale"] > 0, totals   # blocks used / dropped
    if mode == "cloud_led" and k > 1:
        # the cloud decoded tokens itself and also verified some blocks in one pass
        assert totals["rounds"] > 0 and totals["passes"] < totals["tokens"], totals
    elif mode == "cloud_led":
        # a new cloud admits a robot's blocks only once its drafts were seen to agree, one
        # token at a time here: within one short answer it stays a streaming decoder, one
        # pass per token, never more (core/admission.py)
        assert totals["passes"] == totals["tokens"], totals
