"""Train the residual exit adapters of a frozen target by distillation from its last layer.

An untrained exit (shared norm + LM head on a middle layer) rarely agrees with the final
layer (SmolLM2: ~5% at layers 4-10), so the early verdict it feeds is mostly wrong. Each
exit gets a residual linear adapter (h + W h, zero-initialised = identity) trained to
minimise KL(final-layer distribution || exit distribution) on the target's own greedy
continuations: the positions an exit sees in verification. The target stays frozen; only
the adapters learn, so the output can never change, only how often the hint is right.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .exit_head import ExitHead
from .models.base import DecoderAdapter, Prompt

WEIGHTS, CONFIG, CARD = "exit_adapters.safetensors", "exit_adapters.json", "README.md"


@dataclass
class ExitFeatures:
    """Hidden states of the frozen target at every recorded position."""

    exits: dict[int, torch.Tensor]   # exit layer -> (N, hidden)
    final: torch.Tensor              # (N, hidden) output of the last layer, before the norm

    def __len__(self) -> int:
        return self.final.shape[0]


def read_instructions(path: str | Path) -> list[tuple[str, Optional[str]]]:
    """(instruction, image path or None) per JSONL row: MT-bench rows (first of `turns`) or
    rows with `instruction` and an optional `image` (relative to the file's folder)."""
    path = Path(path)
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        text = row["turns"][0] if "turns" in row else row["instruction"]
        image = row.get("image")
        rows.append((text, str(path.parent / image) if image else None))
    return rows


def default_data() -> Path:
    """The MT-bench prompts shipped with the package (see spec_vlm_control/data/README.md)."""
    return Path(__file__).resolve().parent.parent / "data" / "mtbench.jsonl"


def collect(target: DecoderAdapter, prompts: Iterable[Prompt], exit_layers: list[int],
            new_tokens: int, progress=None) -> ExitFeatures:
    """Greedy-decode up to `new_tokens` per prompt and record, at every generated position,
    the hidden state after each exit layer and after the last layer."""
    last = target.num_layers - 1
    wanted = set(exit_layers) | {last}
    records: dict[int, list[torch.Tensor]] = {layer: [] for layer in wanted}

    def record(layer: int, hidden: torch.Tensor) -> None:
        if layer in wanted:
            records[layer].append(hidden[-1:])

    for prompt in prompts:
        state = target.prefill(prompt)
        for _ in range(new_tokens):
            token = int(target.extend(state, [], on_layer=record)[-1].argmax())
            target.crop(state, state.cache_length, pending=token)
            if progress is not None:
                progress.update(1)
            if token in target.eos_token_ids:
                break
    # cat outside inference mode gives ordinary tensors that autograd may use
    stacked = {layer: torch.cat(rows) for layer, rows in records.items()}
    return ExitFeatures({layer: stacked[layer] for layer in exit_layers}, stacked[last])


def _teacher(target: DecoderAdapter, final: torch.Tensor) -> torch.Tensor:
    return target.head(final)


def _student(target: DecoderAdapter, hidden: torch.Tensor, adapter: Optional[nn.Linear]):
    return ExitHead(0, target.norm, target.lm_head, adapter)(hidden)


def agreement(target: DecoderAdapter, features: ExitFeatures,
              adapters: Optional[dict[int, nn.Linear]] = None, batch: int = 512) -> dict[int, float]:
    """Top-1 agreement of each exit with the last layer (adapters missing = identity)."""
    adapters = adapters or {}
    hits = {layer: 0 for layer in features.exits}
    with torch.no_grad():
        for start in range(0, len(features), batch):
            final = features.final[start:start + batch]
            truth = _teacher(target, final).argmax(-1)
            for layer, hidden in features.exits.items():
                guess = _student(target, hidden[start:start + batch], adapters.get(layer)).argmax(-1)
                hits[layer] += int((guess == truth).sum())
    return {layer: hits[layer] / max(1, len(features)) for layer in hits}


def train(target: DecoderAdapter, features: ExitFeatures, steps: int, lr: float = 1e-3,
          batch: int = 256, seed: int = 0, progress=None) -> dict[int, nn.Linear]:
    """Fit one residual adapter per exit layer, in the target's dtype (train an fp32 copy of
    an fp16/bf16 target and cast on load); the target's parameters stay frozen."""
    torch.manual_seed(seed)
    adapters = {layer: ExitHead.new_adapter(target.hidden_size, target.dtype, target.device)
                for layer in features.exits}
    params = [p for a in adapters.values() for p in a.parameters()]
    optimiser = torch.optim.Adam(params, lr=lr)
    frozen = [p for p in (*target.norm.parameters(), *target.lm_head.parameters())]
    saved = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            index = torch.randint(len(features), (min(batch, len(features)),))
            with torch.no_grad():
                teacher = F.log_softmax(_teacher(target, features.final[index]), -1)
            loss = sum(F.kl_div(F.log_softmax(_student(target, hidden[index], adapters[layer]), -1),
                                teacher, log_target=True, reduction="batchmean")
                       for layer, hidden in features.exits.items())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if progress is not None:
                progress.update(1)
                progress.set_postfix(kl=f"{loss.item() / len(adapters):.3f}")
    finally:
        for p, flag in zip(frozen, saved):
            p.requires_grad_(flag)
    return adapters


def save(folder: str | Path, adapters: dict[int, nn.Linear], meta: dict) -> Path:
    """Weights (safetensors), config (JSON) and a model card (markdown) in `folder`."""
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"layer_{layer}.{name}": p.detach().contiguous().cpu()
               for layer, a in adapters.items() for name, p in a.named_parameters()}
    save_file(tensors, str(folder / WEIGHTS))
    config = {**meta, "exit_layers": sorted(adapters),
              "hidden_size": next(iter(adapters.values())).in_features}
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (folder / CARD).write_text(model_card(config))
    return folder


def load(folder: str | Path, dtype: torch.dtype = torch.float32,
         device="cpu") -> tuple[dict[int, nn.Linear], dict]:
    """The adapters saved by `save` (layer -> nn.Linear) and their config."""
    from safetensors.torch import load_file
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    tensors = load_file(str(folder / WEIGHTS))
    adapters = {}
    for layer in config["exit_layers"]:
        adapter = ExitHead.new_adapter(config["hidden_size"], dtype, device)
        adapter.load_state_dict({"weight": tensors[f"layer_{layer}.weight"],
                                 "bias": tensors[f"layer_{layer}.bias"]})
        adapters[layer] = adapter
    return adapters, config


def load_exit_adapters(folder: str | Path, target: DecoderAdapter) -> dict[int, nn.Linear]:
    """The adapters in `folder`, checked against `target` (hidden size, exit layers, tokenizer)
    and cast to its dtype and device, ready for TargetPass.with_layers."""
    adapters, config = load(folder, target.dtype, target.device)
    trained_for = config.get("fingerprint")
    if trained_for and target.fingerprint() and trained_for != target.fingerprint():
        raise ValueError(f"{folder}: exit adapters were trained for {config.get('model')!r}, "
                         "a model with another tokenizer")
    if config["hidden_size"] != target.hidden_size or max(adapters) >= target.num_layers - 1:
        raise ValueError(f"{folder}: adapters for hidden size {config['hidden_size']} at layers "
                         f"{sorted(adapters)} do not fit a target of hidden size "
                         f"{target.hidden_size} with {target.num_layers} layers")
    return adapters


def model_card(config: dict) -> str:
    rows = "\n".join(
        f"| {layer} | {config['agreement_before'][str(layer)]:.1%} | "
        f"{config['agreement_after'][str(layer)]:.1%} |" for layer in config["exit_layers"])
    return f"""# Exit adapters for {config.get('model', 'a target model')}

Residual linear adapters (h + W h) for the early exits of a frozen target, trained by
distillation: KL divergence from the last layer's next-token distribution, on the target's
own greedy continuations. Load them with `spec_vlm_control.core.exit_training.load` and pass
them as `exit_adapters` to the verifier. They change the early verdict (a hint) only; the
output is the target's whatever they contain.

- Target: `{config.get('model')}` (tokenizer fingerprint `{config.get('fingerprint', '')[:16]}`)
- Data: {config.get('data')}
- Training positions: {config.get('train_positions')} from {config.get('train_prompts')} prompts \
({config.get('new_tokens')} greedy tokens each at most)
- Held-out positions: {config.get('eval_positions')} from {config.get('eval_prompts')} prompts
- Training: {config.get('steps')} steps, Adam lr {config.get('lr')}, batch {config.get('batch')}, \
seed {config.get('seed')}

Top-1 agreement with the last layer on the held-out positions:

| exit layer (0-based) | untrained (identity) | trained |
|---|---|---|
{rows}
"""


def split(items: list, holdout: float, seed: int) -> tuple[list, list]:
    """Shuffle once (seeded) and cut off a held-out share (at least one item if any)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    cut = max(1, round(len(items) * holdout)) if holdout > 0 and len(items) > 1 else 0
    return items[cut:], items[:cut]


def build_prompts(builder, rows: list[tuple[str, Optional[str]]]) -> list[Prompt]:
    """Prompts from (instruction, image path) rows through a model's prompt builder."""
    from PIL import Image
    return [builder.build(text, Image.open(image).convert("RGB") if image else None)
            for text, image in rows]
