"""The draft distilled from the finished target: forward KL(target ‖ draft) along the
target's own greedy answers.

Speculative decoding accepts a draft token when it is the target's greedy token after the
verified prefix, and that prefix is always the target's own greedy output. So the draft is
trained exactly there (on-policy): the finished target answers every training scene
greedily once, and the draft learns, teacher-forced on those answers, the target's whole
next-token distribution at every answer position, not only the expert's token. The soft
labels are cached once: the teacher's top-k tokens and one "rest" bucket holding the mass of
all the others (k + 1 buckets), so the cached distribution sums to one and the loss is the
exact KL between the target's and the draft's distributions coarsened to those buckets.
The expert's answers may be mixed in with a cross-entropy weight (`expert_weight`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..sim.dataset import SceneSet
from .data import Batcher
from .training import (Curve, Recipe, answer_loss, cosine_lr, language_optimiser, optimise,
                       teacher_forced_exact)


@dataclass
class TeacherAnswers:
    """Per scene: the target's greedy answer tokens (with the end token when it came within
    the limit) and, per answer position, its top-k token ids and probabilities."""
    tokens: list[list[int]]
    top_ids: list[torch.Tensor]      # (answer length, k) long
    top_p: list[torch.Tensor]        # (answer length, k) float, descending

    def save(self, path) -> None:
        torch.save({"tokens": self.tokens, "top_ids": self.top_ids, "top_p": self.top_p}, path)

    @classmethod
    def load(cls, path) -> "TeacherAnswers":
        return cls(**torch.load(path))


def _prompts(batcher: Batcher, scenes: SceneSet, idx) -> list[list[int]]:
    return [batcher.prompt_ids(scenes.instructions[i]) for i in idx]


@torch.no_grad()
def teacher_answers(target, batcher: Batcher, scenes: SceneSet, idx, top_k: int,
                    max_new_tokens: int, batch: int = 64, progress=None) -> TeacherAnswers:
    """Greedy answers of `target` to scenes `idx`, a batch at a time (full passes over the
    right-padded rows; answers are a few tokens), with the top-k of every step's
    distribution."""
    was = target.training
    target.eval()
    eos = batcher.tokenizer.eos_token_id
    tokens, top_ids, top_p = [], [], []
    for start in range(0, len(idx), batch):
        rows = idx[start:start + batch]
        prompts = _prompts(batcher, scenes, rows)
        answers: list[list[int]] = [[] for _ in rows]
        steps: list[list[tuple]] = [[] for _ in rows]
        images = scenes.images[np.asarray(rows)]
        for _ in range(max_new_tokens):
            live = [r for r, a in enumerate(answers) if not a or a[-1] != eos]
            if not live:
                break
            inputs = batcher.encode([prompts[r] for r in live], [answers[r] for r in live],
                                    images[live])
            inputs.pop("labels")
            last = inputs["attention_mask"].sum(1) - 1
            logits = target(**inputs).logits[torch.arange(len(live)), last]
            p, ids = logits.float().softmax(-1).topk(top_k, -1)
            for j, r in enumerate(live):
                answers[r].append(int(ids[j, 0]))
                steps[r].append((ids[j], p[j]))
        for a, s in zip(answers, steps):
            tokens.append(a)
            top_ids.append(torch.stack([i for i, _ in s]))
            top_p.append(torch.stack([q for _, q in s]))
        if progress is not None:
            progress.update(len(rows))
    target.train(was)
    return TeacherAnswers(tokens, top_ids, top_p)


def bucket_kl(logits: torch.Tensor, top_ids: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Per position: KL(teacher ‖ draft) over the teacher's top-k tokens plus the rest bucket
    (the draft's rest is the log-sum of its probabilities outside the teacher's top-k)."""
    log_q = logits.float().log_softmax(-1)
    outside = torch.ones_like(log_q, dtype=torch.bool).scatter_(1, top_ids, False)
    q_rest = log_q.masked_fill(~outside, float("-inf")).logsumexp(-1, keepdim=True)
    p = torch.cat([top_p, (1 - top_p.sum(-1, keepdim=True)).clamp(min=0)], -1)
    log_q = torch.cat([log_q.gather(1, top_ids), q_rest], -1)
    return (torch.xlogy(p, p) - p * log_q).sum(-1)


def _draft_batch(batcher: Batcher, scenes: SceneSet, teacher: TeacherAnswers, idx):
    """Draft inputs on the teacher's answers and the cached soft labels of their positions,
    in the order in which `labels != -100` lists them."""
    inputs = batcher.encode(_prompts(batcher, scenes, idx), [teacher.tokens[i] for i in idx],
                            scenes.images[np.asarray(idx)])
    ids = torch.cat([teacher.top_ids[i] for i in idx])
    p = torch.cat([teacher.top_p[i] for i in idx])
    return inputs, ids, p


def _answer_logits(model, inputs) -> torch.Tensor:
    """Logits predicting each labelled token (row-major over the batch)."""
    labels = inputs.pop("labels")
    return model(**inputs).logits[:, :-1][labels[:, 1:] != -100]


@torch.no_grad()
def agreement(draft, batcher: Batcher, scenes: SceneSet, teacher: TeacherAnswers, idx,
              batch: int = 64) -> tuple[float, float]:
    """(share of answer positions where the draft's argmax is the teacher's greedy token,
    mean KL per position), teacher-forced on the teacher's answers."""
    was = draft.training
    draft.eval()
    hits = kl = n = 0.0
    for start in range(0, len(idx), batch):
        inputs, ids, p = _draft_batch(batcher, scenes, teacher, idx[start:start + batch])
        logits = _answer_logits(draft, inputs)
        hits += float((logits.argmax(-1) == ids[:, 0]).sum())
        kl += float(bucket_kl(logits, ids, p).sum())
        n += len(ids)
    draft.train(was)
    return hits / max(1.0, n), kl / max(1.0, n)


def distil(draft, batcher: Batcher, scenes: SceneSet, teacher: TeacherAnswers,
           heldout: SceneSet, heldout_teacher: TeacherAnswers, recipe: Recipe,
           progress=None) -> Curve:
    """Train `draft` (its vision tower frozen) on KL(teacher ‖ draft) along the teacher's
    answers, plus `recipe.distil_expert_weight` × cross-entropy on the expert's answers.
    Logs the held-out KL and agreement with the teacher and exact match against the
    expert, before training and every `recipe.eval_every` steps."""
    seed = recipe.seed + 2
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt, params = language_optimiser(draft, recipe)
    probe = np.arange(min(recipe.curve_scenes, len(heldout)))
    steps = recipe.draft_steps
    curve, t0, ema = Curve("draft"), time.monotonic(), None

    def log(step: int) -> None:
        agree, held_kl = agreement(draft, batcher, heldout, heldout_teacher, probe)
        exact = teacher_forced_exact(draft, batcher, heldout, probe).mean()
        curve.rows.append({"step": step, "s": round(time.monotonic() - t0, 1),
                           "loss": round(held_kl if ema is None else ema, 4),
                           "heldout_kl": round(held_kl, 4), "heldout_agreement": round(agree, 4),
                           "heldout_exact": round(float(exact), 4)})

    log(0)      # the untrained draft (its loss: the held-out KL)
    draft.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(recipe.lr, step, steps, recipe.warmup)
        idx = rng.integers(0, len(scenes), recipe.batch)
        inputs, ids, p = _draft_batch(batcher, scenes, teacher, idx)
        kl = bucket_kl(_answer_logits(draft, inputs), ids, p).mean()
        loss = kl
        if recipe.distil_expert_weight:
            loss = loss + recipe.distil_expert_weight * answer_loss(draft, batcher(scenes, idx))
        optimise(opt, params, loss)
        ema = kl.item() if ema is None else 0.98 * ema + 0.02 * kl.item()
        if (step + 1) % recipe.eval_every == 0 or step + 1 == steps:
            log(step + 1)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(kl=f"{ema:.3f}")
    draft.eval()
    return curve
