"""The demo pair's tokenizer, image processor, figures and training pipeline (short run)."""
import json

import pytest
from PIL import Image

from spec_vlm_control.demo_pair.data import Batcher, SceneSpec, pixel_values, render
from spec_vlm_control.demo_pair.evaluation import (acceptance, plan_vector, speculative_figures,
                                                   task_types, within_one_step)
from spec_vlm_control.demo_pair.vocabulary import demo_image_processor, demo_tokenizer
from spec_vlm_control.sim.expert import expert_steps
from spec_vlm_control.sim.scenes import SceneSampler


@pytest.fixture(scope="module")
def scenes():
    return render(SceneSpec(n=40, seed=7), workers=1)


def test_every_instruction_and_answer_is_in_the_vocabulary(scenes):
    tok = demo_tokenizer()
    unk = tok.convert_tokens_to_ids("<unk>")
    for text in scenes.instructions + scenes.answers:
        ids = tok(text, add_special_tokens=False).input_ids
        assert unk not in ids, text
        assert tok.decode(ids) == text


def test_prompt_frame_puts_the_instruction_before_sixteen_image_tokens(scenes):
    batch = Batcher(demo_tokenizer(), image_tokens=16)([scenes][0], [0])
    tok = demo_tokenizer()
    ids = batch["input_ids"][0].tolist()
    words = len(scenes.instructions[0].split())
    assert tok.convert_ids_to_tokens(ids[words]) == "<|vision_start|>"
    assert ids.count(tok.convert_tokens_to_ids("<|image_pad|>")) == 16
    labels = batch["labels"][0]
    answer = tok.decode(batch["input_ids"][0][labels != -100], skip_special_tokens=True)
    assert answer == scenes.answers[0]


def test_training_pixels_equal_the_saved_image_processor(scenes, tmp_path):
    """What the models are trained on is what the robot's prompt builder feeds them."""
    from spec_vlm_control.core.models.loading import pil_image_processor
    demo_image_processor().save_pretrained(tmp_path)
    processor = pil_image_processor(tmp_path)
    out = processor(images=[Image.fromarray(i) for i in scenes.images[:3]], return_tensors="pt")
    assert out["pixel_values"].shape == (3 * 64, 5 * 2 * 8 * 8)
    assert float((out["pixel_values"] - pixel_values(scenes.images[:3])).abs().max()) == 0.0


def test_expert_walks_at_most_max_forward():
    sampler = SceneSampler(seed=3, max_gap=3.0)
    walks = []
    for _ in range(60):
        scene = sampler.sample()
        if scene.task.verb == "go_to":
            full = expert_steps(scene.world, scene.task)
            capped = expert_steps(scene.world, scene.task, max_forward=1.0)
            assert [s.verb for s in full] == [s.verb for s in capped]
            if full[-1].verb == "forward":
                walks.append((full[-1].value, capped[-1].value))
    assert walks and all(c == min(f, 1.0) for f, c in walks)
    assert any(f > 1.0 for f, _ in walks)


@pytest.mark.parametrize("answer,expert,near", [
    ("turn_left 20 ; forward 1", "turn_left 20 ; forward 1", True),
    ("turn_left 30 ; forward 0.75", "turn_left 20 ; forward 1", True),
    ("turn_left 40 ; forward 1", "turn_left 20 ; forward 1", False),
    ("turn_left 20 ; forward 0.5", "turn_left 20 ; forward 1", False),
    ("turn_right 10", "turn_left 10", False),
    ("turn_right 10", "stop", True),
    ("stop", "forward 0.25", True),
    ("turn_left", "turn_left 10", False),
    ("left 0.5", "stop", False),
    # a plan that turns after walking (go to A then turn towards B): step by step
    ("turn_left 20 ; forward 0.75 ; turn_right 30", "turn_left 20 ; forward 0.75 ; turn_right 30", True),
    ("turn_left 30 ; forward 0.5 ; turn_right 40", "turn_left 20 ; forward 0.75 ; turn_right 30", True),
    ("turn_left 40 ; forward 0.75 ; turn_right 30", "turn_left 20 ; forward 0.75 ; turn_right 30", False),
    ("turn_left 20 ; forward 0.75 ; turn_left 30", "turn_left 20 ; forward 0.75 ; turn_right 30", False),
    ("turn_left 20 ; forward 0.75", "turn_left 20 ; forward 0.75 ; turn_right 30", False),
    ("forward 0.75 ; turn_right 30", "forward 0.75 ; turn_right 20", True),
    # same sums, other order: near by the summed turn, not by the steps
    ("turn_right 10 ; forward 0.75 ; turn_left 20", "turn_left 20 ; forward 0.75 ; turn_right 10", False),
    ("turn_left 20 ; forward 0.75 ; turn_right 30 ; stop", "turn_left 20 ; forward 0.75 ; turn_right 30", False),
    # a one-goal expert answer keeps the summed rule
    ("turn_left 10 ; forward 1 ; turn_left 10", "turn_left 20 ; forward 1", True),
])
def test_within_one_step(answer, expert, near):
    assert within_one_step(answer, expert) is near


def test_plan_vector_sums_signed_turns():
    assert plan_vector("stop") == (0.0, 0.0)
    assert plan_vector("turn_right 30 ; forward 1.25") == (-30.0, 1.25)


def test_acceptance_by_block_position_counts_only_proposed_tokens():
    """Blocks as (proposed, accepted): position i's share is over blocks that proposed an
    i-th token; the mean is accepted tokens per round."""
    figures = acceptance([[(4, 4), (4, 1)], [(2, 2), (0, 0)]])
    assert figures["acceptance"] == 7 / 10 and figures["rounds"] == 4
    assert figures["by_position"] == [3 / 3, 2 / 3, 1 / 2, 1 / 2]
    assert figures["mean_accepted_per_round"] == 7 / 4
    assert acceptance([[(2, 0)]])["by_position"] == [0.0, 0.0, None, None]


def test_speculative_figures_split_by_answer_and_task():
    spec = {"blocks": [[(4, 1)], [(2, 2)], [(4, 4), (1, 0)]], "passes": [2, 1, 2],
            "tokens": [[5, 6, 3], [7, 3], [5, 5, 5, 5, 5, 3, 9]]}
    figures = speculative_figures(spec, ["turn_left 10", "stop", "forward 1"],
                                  ["turn towards the red ball", "stop", "go to the blue box"],
                                  eos=[3])
    assert figures["all"]["acceptance"] == 7 / 11
    assert figures["stop excluded"]["acceptance"] == 5 / 9
    assert figures["task stop"]["scenes"] == 1 and figures["task go_to"]["acceptance"] == 4 / 5
    assert figures["target_passes_per_token"] == 5 / 11
    assert task_types(["go to the red ball then turn towards the blue box", "stop"]) == [
        "go_to_then_turn_towards", "stop"]


@pytest.mark.slow
def test_short_train_demo_run_lowers_the_loss_and_writes_a_loadable_pair(tmp_path):
    """`spec-vlm train-demo --quick`: the pipeline from nothing to a model card, through the
    same code as the full run; the models it writes load with the robot's loader."""
    import subprocess
    import sys
    out = tmp_path / "pair"
    done = subprocess.run([sys.executable, "-m", "spec_vlm_control.cli", "train-demo", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "metrics.json").read_text())
    for name in ("vision", "target", "draft", "blind baseline"):
        rows = result["curves"][name]
        assert rows[-1]["loss"] < rows[0]["loss"], (name, rows)
    m = result["metrics"]
    assert m["speculative_equals_target_greedy"] == 1.0
    # the draft is distilled from the finished target: its KL along the target's answers falls
    assert result["curves"]["draft"][-1]["heldout_kl"] < result["curves"]["draft"][0]["heldout_kl"]
    assert {"render_s", "vision_s", "target_s", "baseline_s", "teacher_answers_s",
            "distillation_s", "exits_s", "evaluation_s", "total_s"} <= set(result["timings_s"])
    card = (out / "MODEL_CARD.md").read_text()
    assert "stop excluded" in card and "Target passes per committed token" in card
    assert "target exact match (one-goal tasks)" in card and "(two-goal tasks)" in card
    for name, files in result["weights_sha256"].items():
        for f, digest in files.items():
            assert digest in card
    assert (out / "curves.png").stat().st_size > 0
    assert json.loads((out / "pair.json").read_text()) == {"task_mix": "two_goal_third"}
    assert "task go_to_then_turn_towards" in m["target"]
    from spec_vlm_control.core.exit_training import load_exit_adapters
    from spec_vlm_control.core.models.loading import load_model
    target = load_model(str(out / "target"))
    draft = load_model(str(out / "draft"))
    assert target.fingerprint == draft.fingerprint
    assert load_exit_adapters(out / "target" / "exits", target.adapter)


def test_the_cards_accuracy_goals_are_over_the_one_goal_tasks():
    """The target's goals hold on the first pair's tasks; two-goal answers are reported
    apart: the one-goal rates pool the per-task rates by scene count."""
    from spec_vlm_control.demo_pair.card import one_goal_scores, points_over_blind
    rates = {"task go_to": (0.5, 1.0), "task stop": (1.0, 1.0),
             "task go_to_then_turn_towards": (0.0, 0.25)}
    blind = {"task go_to": (0.0, 0.5), "task stop": (1.0, 1.0),
             "task go_to_then_turn_towards": (0.0, 0.0)}

    def scored(table):
        return {task: {"exact": e, "within_one_step": n} for task, (e, n) in table.items()}
    metrics = {"target": scored(rates), "blind_baseline": scored(blind),
               "speculative": {"all": {"scenes": 7}, "task go_to": {"scenes": 2},
                               "task stop": {"scenes": 1},
                               "task go_to_then_turn_towards": {"scenes": 4}}}
    assert one_goal_scores(metrics, "target") == pytest.approx(
        {"exact": 2 / 3, "within_one_step": 1.0})
    assert points_over_blind(metrics) == pytest.approx(100 * (2 / 3 - 1 / 3))
