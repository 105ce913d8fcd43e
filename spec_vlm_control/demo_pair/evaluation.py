"""The demo pair's figures on held-out scenes, measured the way the model card reports them.

- exact: the greedy answer equals the expert's, word for word;
- within one step: both answers parse, and the signed turn and the forward distance each
  differ by at most one rounding step (10 degrees, 0.25 m); `stop` is (0, 0); against a
  multi-step expert plan (turn, walk, turn): the same verbs in order, each value so;
- acceptance: draft tokens accepted / draft tokens proposed, speculative greedy decoding
  with k = 4 through the engine (a block ends at the draft's end-of-sequence token; an end
  token the target accepts counts as accepted: core/metrics.py `EdgeTally.judged`);
- lossless: the speculative output equals the target's own greedy output (Hugging Face
  `generate`), token for token, on every scene;
- exit agreement: top-1 of the exit head against the last layer on the target's greedy
  continuations, and the exact-match rate of answers decoded by the exit head alone;
- cost: one decode step at a fixed cache length, one thread, median of `steps` steps.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..action.grammar import VERBS, PlanError, Step, Unit, parse_step
from ..sim.dataset import SceneSet
from ..sim.tasks import Task
from .vocabulary import DISTANCE_STEP_M

ANGLE_STEP_DEG = 10.0
_GRID = {Unit.DEGREES: ANGLE_STEP_DEG, Unit.METRES: DISTANCE_STEP_M}   # one rounding step


def task_types(instructions) -> list[str]:
    """Each instruction's task type (sim/tasks.Task.type: go_to, turn_towards, stop,
    go_to_then_turn_towards), in the order given."""
    return [Task.parse(text).type for text in instructions]


def plan_steps(text: str) -> list[Step] | None:
    """The steps of an answer, None if it does not parse."""
    try:
        return [parse_step(part)[0] for part in text.split(";")]
    except (PlanError, ValueError):
        return None


def plan_vector(text: str) -> tuple[float, float] | None:
    """(signed turn in degrees, left positive; forward metres) of an answer, None if it does
    not parse as turn-then-forward or stop."""
    turn = forward = 0.0
    steps = plan_steps(text)
    if steps is None:
        return None
    for step in steps:
        if step.verb == "turn_left":
            turn += step.value
        elif step.verb == "turn_right":
            turn -= step.value
        elif step.verb == "forward":
            forward += step.value
        elif step.verb != "stop":
            return None
    return turn, forward


def within_one_step(answer: str, expert: str) -> bool:
    """A multi-step expert plan (one that turns after walking: "go to A then turn towards
    B"): the answer has the same verbs in the same order, each value within one step.
    Otherwise: the answers' signed turns and walks, each within one step."""
    plan = plan_steps(expert)
    if plan is not None and any(a.verb == "forward" and b.verb.startswith("turn")
                                for a, b in zip(plan, plan[1:])):
        got = plan_steps(answer)
        return (got is not None and [s.verb for s in got] == [s.verb for s in plan]
                and all(abs(g.value - e.value) <= _GRID[VERBS[e.verb]] + 1e-6
                        for g, e in zip(got, plan) if e.value is not None))
    a, b = plan_vector(answer), plan_vector(expert)
    return (a is not None and b is not None and abs(a[0] - b[0]) <= ANGLE_STEP_DEG + 1e-6
            and abs(a[1] - b[1]) <= DISTANCE_STEP_M + 1e-6)


def prompts_for(loaded, scenes: SceneSet, idx) -> list:
    """Prompts exactly as the robot builds them: the loaded model's chat template and image
    processor on the (JPEG round-tripped) frame."""
    from PIL import Image
    return [loaded.prompts.build(scenes.instructions[i], Image.fromarray(scenes.images[i]))
            for i in idx]


@torch.no_grad()
def greedy(model, prompt, image_token_id: int, max_new_tokens: int = 12) -> list[int]:
    ids = prompt.input_ids
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         mm_token_type_ids=(ids == image_token_id).int(), **prompt.vision,
                         do_sample=False, max_new_tokens=max_new_tokens)
    return out[0, ids.shape[1]:].tolist()


def exit_only_model(model, layer: int, adapter):
    """A copy of `model` that stops after decoder layer `layer` and reads its answer through
    the engine's exit head (adapter + the shared norm and LM head): what the exit alone would
    say. The decoder's own final norm moves into the head, so `generate` works unchanged."""
    from ..core.exit_head import ExitHead
    short = copy.deepcopy(model)
    lm = short.model.language_model
    lm.layers = lm.layers[:layer + 1]
    short.config.text_config.num_hidden_layers = layer + 1
    short.lm_head = ExitHead(layer, lm.norm, short.lm_head, adapter)
    lm.norm = torch.nn.Identity()
    return short


@dataclass
class Answers:
    texts: list[str]
    exact: np.ndarray
    near: np.ndarray

    def summary(self) -> dict:
        return {"exact": float(self.exact.mean()), "within_one_step": float(self.near.mean())}


def score(texts: list[str], scenes: SceneSet, idx) -> Answers:
    expert = [scenes.answers[i] for i in idx]
    return Answers(texts, np.array([t == e for t, e in zip(texts, expert)]),
                   np.array([within_one_step(t, e) for t, e in zip(texts, expert)]))


def texts_of(loaded, answers: list[list[int]]) -> list[str]:
    """Answers' token ids as the action language's text."""
    return [loaded.tokenizer.decode(t, skip_special_tokens=True).strip() for t in answers]


def answers_of(model, loaded, prompts, blind_frames: bool = False, progress=None) -> list[str]:
    answers = []
    for prompt in prompts:
        if blind_frames:
            prompt = type(prompt)(input_ids=prompt.input_ids, text=prompt.text,
                                  vision={**prompt.vision,
                                          "pixel_values": torch.full_like(prompt.vision["pixel_values"], -1.0)})
        answers.append(greedy(model, prompt, loaded.adapter.image_token_id))
        if progress is not None:
            progress.update(1)
    return texts_of(loaded, answers)


def speculative(target, draft, prompts, block_size: int = 4, max_new_tokens: int = 12,
                exit_layer: int | None = None, exit_adapters=None, progress=None) -> dict:
    """Greedy speculative decoding of every prompt through the engine (plain mode, and the
    early-exit verdicts counted when an exit is given); per scene, its blocks as
    (proposed, accepted) and its target passes (`acceptance` reads the blocks)."""
    from ..core.decode import Costs, decode
    from ..core.protocol import DecodingParams
    mode = DecodingParams.MODE_EARLY_EXIT if exit_layer is not None else DecodingParams.MODE_PLAIN
    params = DecodingParams(mode=mode, block_size=block_size, max_new_tokens=max_new_tokens)
    outputs, blocks, passes, early_hits, early_judged = [], [], [], 0, 0
    for prompt in prompts:
        out = decode(target.adapter, draft.adapter, prompt, params, costs=Costs(),
                     exit_layers=[exit_layer] if exit_layer is not None else (),
                     exit_adapters=exit_adapters)
        outputs.append(out.tokens)
        blocks.append(out.edge.tally.blocks)
        passes.append(out.stats.target_passes)
        early_hits += out.edge.tally.early_hits
        early_judged += out.edge.tally.early_judged
        if progress is not None:
            progress.update(1)
    return {"tokens": outputs, "blocks": blocks, "passes": passes,
            "early_hit_rate": early_hits / max(1, early_judged)}


def acceptance(blocks: list[list[tuple[int, int]]], block_size: int = 4) -> dict:
    """Acceptance figures of a set of scenes' blocks: draft tokens accepted / proposed; per
    block position i, the share of blocks whose i-th draft token was accepted among those
    that proposed one; and the mean accepted tokens per round (block)."""
    rounds = [b for scene in blocks for b in scene]
    proposed = sum(n for n, _ in rounds)
    accepted = sum(a for _, a in rounds)
    by_position = []
    for i in range(1, block_size + 1):
        asked = sum(n >= i for n, _ in rounds)
        by_position.append(sum(a >= i for _, a in rounds) / asked if asked else None)
    return {"scenes": len(blocks), "acceptance": accepted / max(1, proposed),
            "accepted": accepted, "proposed": proposed, "rounds": len(rounds),
            "mean_accepted_per_round": accepted / max(1, len(rounds)), "by_position": by_position}


def speculative_figures(spec: dict, answers: list[str], instructions: list[str],
                        eos, block_size: int = 4) -> dict:
    """The acceptance figures over all scenes, without the scenes whose (target) answer is
    `stop`, and per task type; target passes per committed token."""
    types = task_types(instructions)
    groups = {"all": [True] * len(answers), "stop excluded": [a != "stop" for a in answers]}
    groups.update({f"task {t}": [u == t for u in types] for t in dict.fromkeys(types)})
    figures = {name: acceptance([b for b, keep in zip(spec["blocks"], mask) if keep], block_size)
               for name, mask in groups.items()}
    tokens = sum(len(until_eos(t, eos)) for t in spec["tokens"])
    figures["target_passes_per_token"] = sum(spec["passes"]) / max(1, tokens)
    return figures


def until_eos(tokens: list[int], eos) -> list[int]:
    """The answer as the engine commits it: up to and including the first end token."""
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[:i + 1]
    return list(tokens)


def step_cost(adapter, prompt, steps: int = 300) -> float:
    """Median seconds of one decode step (one new token) at the prompt's cache length."""
    from ..core.sequence import Sequence
    torch.set_num_threads(1)
    with torch.inference_mode():
        seq = Sequence(adapter, prompt)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            seq.feed([])
            times.append(time.perf_counter() - t0)
            seq.settle([])
    return statistics.median(times)
