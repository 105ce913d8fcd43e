"""The committed demo pair: the weights are the ones the logged `train-demo` run wrote, and
they meet the model card's accuracy targets on scenes neither training nor the card used."""
import hashlib
import json

import numpy as np
import pytest
import torch

from spec_vlm_control.demo_pair import COMMITTED
from spec_vlm_control.demo_pair import evaluation as ev
from spec_vlm_control.demo_pair.data import SceneSpec, render
from spec_vlm_control.sim.dataset import SceneSet


@pytest.fixture(scope="module")
def pair():
    from spec_vlm_control.core.exit_training import load_exit_adapters
    from spec_vlm_control.core.models.loading import load_model
    torch.set_num_threads(1)
    target = load_model(str(COMMITTED / "target"))
    draft = load_model(str(COMMITTED / "draft"))
    return target, draft, load_exit_adapters(COMMITTED / "target" / "exits", target.adapter)


@pytest.fixture(scope="module")
def card():
    return json.loads((COMMITTED / "metrics.json").read_text())


@pytest.fixture(scope="module")
def fresh_scenes():
    """Off-grid and on-grid scenes from sampler seeds no run of train-demo renders."""
    return SceneSet.concat([render(SceneSpec(n=150, seed=7000), workers=1),
                            render(SceneSpec(n=100, seed=7500, on_grid=True), workers=1)])


def test_weights_are_the_ones_the_logged_run_wrote(card):
    for name, files in card["weights_sha256"].items():
        for path, digest in files.items():
            assert hashlib.sha256((COMMITTED / name / path).read_bytes()).hexdigest() == digest
    text = (COMMITTED / "MODEL_CARD.md").read_text()
    assert all(d in text for files in card["weights_sha256"].values() for d in files.values())
    size = sum(p.stat().st_size for p in COMMITTED.rglob("*") if p.is_file())
    assert size <= 40e6


@pytest.mark.slow
def test_committed_pair_meets_the_accuracy_targets_on_fresh_scenes(pair, fresh_scenes, card):
    target, draft, adapters = pair
    layer = card["metrics"]["exit_layer"]
    idx = np.arange(len(fresh_scenes))
    prompts = ev.prompts_for(target, fresh_scenes, idx)
    reference = [ev.greedy(target.adapter.model, p, target.adapter.image_token_id) for p in prompts]
    answers = ev.score(ev.texts_of(target, reference), fresh_scenes, idx)
    print(f"exact {answers.exact.mean():.3f}, within one step {answers.near.mean():.3f}")
    assert answers.exact.mean() >= 0.80
    assert answers.near.mean() >= 0.95
    spec = ev.speculative(target, draft, prompts, exit_layer=layer, exit_adapters=adapters)
    eos = target.adapter.eos_token_ids
    assert all(ev.until_eos(a, eos) == ev.until_eos(b, eos)
               for a, b in zip(spec["tokens"], reference))
    # The card's goal is 60%. Its run counted an accepted end token as rejected (58.9%);
    # counted as accepted (core/metrics.py EdgeTally.judged) the committed draft reaches
    # 81.9% on the card's 600 scenes (docs/draft_distillation.md).
    acceptance = ev.acceptance(spec["blocks"])["acceptance"]
    print(f"acceptance {acceptance:.3f}")
    assert acceptance >= 0.60
    assert layer + 1 <= target.adapter.num_layers // 2
    from spec_vlm_control.core import exit_training
    features = exit_training.collect(target.adapter, prompts, [layer], 12)
    assert exit_training.agreement(target.adapter, features, adapters)[layer] >= 0.80
