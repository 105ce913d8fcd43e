"""The committed demo pair: the weights are the ones the logged `train-demo` run wrote, and
they meet the model card's accuracy targets on scenes neither training nor the card used,
drawn from the task mix the pair was trained on (pair.json)."""
import hashlib
import json

import numpy as np
import pytest
import torch

from spec_vlm_control.demo.pair import open_pair
from spec_vlm_control.demo_pair import COMMITTED
from spec_vlm_control.demo_pair import evaluation as ev
from spec_vlm_control.demo_pair.data import SceneSpec, render
from spec_vlm_control.sim.dataset import SceneSet
from spec_vlm_control.sim.tasks import TWO_GOAL

N_EACH = 250                # off-grid and on-grid scenes each
TWO_GOAL_SCENES = 160       # at least, of the 500 (the mix makes every third task two-goal)
REFERENCE_SCENES = 200      # decoded again by Hugging Face generate
EXIT_SCENES = 100
# No goal is set on two-goal answers; these guard the committed pair's figures on these
# scenes (24.0% exact, 77.8% within one step, 2026-11-28), less 2 points.
TWO_GOAL_EXACT, TWO_GOAL_NEAR = 0.22, 0.758


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
    """Off-grid and on-grid scenes of the pair's task mix from sampler seeds no run of
    train-demo renders (the card's held-out scenes are seeds 1900 and 1950)."""
    mix = open_pair(COMMITTED).task_mix
    return SceneSet.concat([render(SceneSpec(n=N_EACH, seed=7000, task_mix=mix), workers=2),
                            render(SceneSpec(n=N_EACH, seed=7500, on_grid=True, task_mix=mix),
                                   workers=2)])


def test_weights_are_the_ones_the_logged_run_wrote(card):
    for name, files in card["weights_sha256"].items():
        for path, digest in files.items():
            assert hashlib.sha256((COMMITTED / name / path).read_bytes()).hexdigest() == digest
    text = (COMMITTED / "MODEL_CARD.md").read_text()
    assert all(d in text for files in card["weights_sha256"].values() for d in files.values())
    size = sum(p.stat().st_size for p in COMMITTED.rglob("*") if p.is_file())
    assert size <= 40e6
    assert open_pair(COMMITTED).task_mix == card["plan"]["train"]["task_mix"]


@pytest.mark.slow
def test_committed_pair_meets_the_accuracy_targets_on_fresh_scenes(pair, fresh_scenes, card):
    target, draft, adapters = pair
    layer = card["metrics"]["exit_layer"]
    idx = np.arange(len(fresh_scenes))
    two_goal = np.array([t == TWO_GOAL for t in ev.task_types(fresh_scenes.instructions)])
    assert two_goal.sum() >= TWO_GOAL_SCENES
    prompts = ev.prompts_for(target, fresh_scenes, idx)
    spec = ev.speculative(target, draft, prompts, exit_layer=layer, exit_adapters=adapters)
    eos = target.adapter.eos_token_ids
    answered = [ev.until_eos(tokens, eos) for tokens in spec["tokens"]]
    assert all(a and a[-1] in eos for a in answered)     # none hits max_new_tokens
    # Lossless: the engine's answers are the target's own greedy ones (Hugging Face
    # generate), checked on the first REFERENCE_SCENES; the figures below are of the
    # answers the robot gets.
    for prompt, answer in zip(prompts[:REFERENCE_SCENES], answered):
        greedy = ev.greedy(target.adapter.model, prompt, target.adapter.image_token_id)
        assert ev.until_eos(greedy, eos) == answer
    answers = ev.score(ev.texts_of(target, answered), fresh_scenes, idx)
    one, two = answers.exact[~two_goal].mean(), answers.exact[two_goal].mean()
    near_one, near_two = answers.near[~two_goal].mean(), answers.near[two_goal].mean()
    print(f"{two_goal.sum()} two-goal scenes of {len(idx)}; one-goal exact {one:.3f}, within "
          f"one step {near_one:.3f}; two-goal exact {two:.3f}, within one step {near_two:.3f}")
    assert one >= 0.80 and near_one >= 0.95                  # the card's goals
    assert two >= TWO_GOAL_EXACT and near_two >= TWO_GOAL_NEAR   # as measured, less 2 points
    figures = ev.speculative_figures(spec, answers.texts, fresh_scenes.instructions, eos)
    acceptance = figures["stop excluded"]["acceptance"]
    print(f"acceptance without stop answers {acceptance:.3f}, "
          f"{figures['target_passes_per_token']:.3f} target passes per token")
    # The goal is 85% (not met: 81.3% on the card's 600 scenes, 80.6% on these);
    # this guards the committed draft at its measured figure less 2 points.
    assert acceptance >= 0.786
    assert figures["target_passes_per_token"] <= 0.5
    assert layer + 1 <= target.adapter.num_layers // 2
    from spec_vlm_control.core import exit_training
    features = exit_training.collect(target.adapter, prompts[:EXIT_SCENES], [layer], 12)
    assert exit_training.agreement(target.adapter, features, adapters)[layer] >= 0.80
