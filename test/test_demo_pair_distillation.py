"""The draft distilled from its target (demo_pair/distillation.py), on tiny demo-pair models:
the teacher's cached answers are its greedy answers, the bucketed KL is a true KL, and
distillation lowers it and raises the draft's agreement with the teacher, deterministically."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from spec_vlm_control.demo_pair import distillation as dist
from spec_vlm_control.demo_pair.architecture import Size, build
from spec_vlm_control.demo_pair.data import Batcher, SceneSpec, render
from spec_vlm_control.demo_pair.training import Recipe, answer_loss
from spec_vlm_control.demo_pair.vocabulary import demo_tokenizer

TINY_TARGET = Size(layers=2, hidden=64, heads=4, vision_depth=1, vision_width=32)
TINY_DRAFT = replace(TINY_TARGET, layers=1)
RECIPE = Recipe(batch=16, draft_steps=60, lr=3e-3, warmup=5, eval_every=30, curve_scenes=16,
                distil_top_k=4, max_new_tokens=6)


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)
    tokenizer = demo_tokenizer()
    batcher = Batcher(tokenizer, image_tokens=16)
    target = build(tokenizer, TINY_TARGET, seed=3).eval()
    sets = []
    for spec in (SceneSpec(n=32, seed=7), SceneSpec(n=16, seed=8)):   # training, held out
        scenes = render(spec, workers=1)
        sets.append((scenes, dist.teacher_answers(target, batcher, scenes, np.arange(spec.n),
                                                  RECIPE.distil_top_k, RECIPE.max_new_tokens,
                                                  batch=12)))
    return tokenizer, batcher, target, sets


def fresh_draft(tokenizer, target):
    draft = build(tokenizer, TINY_DRAFT, seed=4)
    draft.model.visual.load_state_dict(target.model.visual.state_dict())
    return draft


@pytest.mark.slow
def test_teacher_answers_are_the_targets_greedy_answers(world, tmp_path):
    """On-policy: what the draft is trained on is what `generate` (and so the verifier)
    answers, from the robot's prompt builder on the same frames."""
    from spec_vlm_control.core.models.loading import load_model
    from spec_vlm_control.demo_pair import evaluation as ev
    from spec_vlm_control.demo_pair.pipeline import _save_model
    _, _, target, [(scenes, teacher), _] = world
    _save_model(target, tmp_path / "target")
    loaded = load_model(str(tmp_path / "target"), "fp32")
    idx = np.arange(12)
    for i, prompt in zip(idx, ev.prompts_for(loaded, scenes, idx)):
        want = ev.greedy(loaded.adapter.model, prompt, loaded.adapter.image_token_id,
                         max_new_tokens=RECIPE.max_new_tokens)
        assert teacher.tokens[i] == want
        assert teacher.top_ids[i][:, 0].tolist() == want
    assert all(p.shape == (len(t), RECIPE.distil_top_k) for t, p in zip(teacher.tokens, teacher.top_p))


def test_bucket_kl_is_the_kl_of_the_coarsened_distributions():
    torch.manual_seed(0)
    teacher, draft = torch.randn(5, 61).softmax(-1), torch.randn(5, 61)
    p, ids = teacher.topk(4, -1)
    got = dist.bucket_kl(draft, ids, p)
    q = draft.softmax(-1)
    for row in range(5):
        rest = torch.ones(61, dtype=torch.bool)
        rest[ids[row]] = False
        pb = torch.cat([p[row], teacher[row][rest].sum()[None]])
        qb = torch.cat([q[row][ids[row]], q[row][rest].sum()[None]])
        assert float(got[row]) == pytest.approx(float((pb * (pb / qb).log()).sum()), rel=1e-4)
    assert float(dist.bucket_kl(teacher.log(), ids, p).abs().max()) < 1e-5   # draft = teacher


@pytest.mark.slow
def test_distillation_lowers_the_kl_and_raises_agreement_deterministically(world):
    tokenizer, batcher, target, [(train, teacher), (held, held_teacher)] = world
    probe = np.arange(len(held))
    draft = fresh_draft(tokenizer, target)
    before = dist.agreement(draft, batcher, held, held_teacher, probe)
    vision = {k: v.clone() for k, v in draft.model.visual.state_dict().items()}
    curve = dist.distil(draft, batcher, train, teacher, held, held_teacher, RECIPE)
    after = dist.agreement(draft, batcher, held, held_teacher, probe)
    print(f"agreement {before[0]:.3f} -> {after[0]:.3f}, KL {before[1]:.3f} -> {after[1]:.3f}")
    assert after[1] < before[1] and after[0] > before[0]
    assert curve.rows[0]["heldout_kl"] == pytest.approx(before[1], abs=1e-4)
    assert curve.rows[-1]["heldout_kl"] < before[1] and curve.rows[-1]["loss"] < curve.rows[0]["loss"]
    assert all(torch.equal(v, draft.model.visual.state_dict()[k]) for k, v in vision.items())
    again = fresh_draft(tokenizer, target)
    dist.distil(again, batcher, train, teacher, held, held_teacher, RECIPE)
    assert all(torch.equal(a, b) for a, b in zip(draft.parameters(), again.parameters()))


@pytest.mark.slow
def test_expert_answers_mixed_in_pull_the_draft_towards_them(world):
    """`distil_expert_weight`: the expert answers' cross-entropy joins the KL."""
    tokenizer, batcher, target, [(train, teacher), (held, held_teacher)] = world
    losses = {}
    for weight in (0.0, 5.0):
        draft = fresh_draft(tokenizer, target)
        dist.distil(draft, batcher, train, teacher, held, held_teacher,
                    replace(RECIPE, draft_steps=30, distil_expert_weight=weight))
        with torch.no_grad():
            losses[weight] = float(answer_loss(draft, batcher(held, np.arange(len(held)))))
    assert losses[5.0] < losses[0.0]
