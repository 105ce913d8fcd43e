"""`spec-vlm train-exits` / `eval-exits` end to end on a tiny VLM with image+instruction data."""
import json

import pytest
import torch

from spec_vlm_control.cli import main
from spec_vlm_control.core import exit_training
from tiny_models import (
    synthetic_image, tiny_image_processor, tiny_qwen2vl_model, tiny_qwen2vl_tokenizer)

pytestmark = pytest.mark.slow  # trains exit adapters


def test_train_then_eval_exits(tmp_path, capsys):
    tokenizer = tiny_qwen2vl_tokenizer()
    tiny_qwen2vl_model(tokenizer, seed=5, dtype=torch.float32).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    tiny_image_processor().save_pretrained(tmp_path / "model")
    rows = []
    for seed, text in enumerate(["go to the red ball", "turn towards the blue box", "stop",
                                 "go to the green box", "turn left", "walk forward"]):
        synthetic_image(seed).save(tmp_path / f"scene{seed}.png")
        rows.append(json.dumps({"instruction": text, "image": f"scene{seed}.png"}))
    (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
    common = ["--model", str(tmp_path / "model"), "--data", str(tmp_path / "data.jsonl"),
              "--new-tokens", "8"]

    assert main(["train-exits", *common, "--exits", "0,1", "--steps", "40", "--lr", "3e-3",
                 "--holdout", "0.34", "--out", str(tmp_path / "exits")]) == 0
    adapters, config = exit_training.load(tmp_path / "exits")
    assert sorted(adapters) == [0, 1] and config["steps"] == 40
    assert config["train_prompts"] == 4 and config["eval_prompts"] == 2
    assert config["train_positions"] == 4 * 8
    assert any(a.weight.abs().sum() > 0 for a in adapters.values())
    assert "| 0 |" in (tmp_path / "exits" / "README.md").read_text()
    capsys.readouterr()

    assert main(["eval-exits", *common, "--adapters", str(tmp_path / "exits"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["positions"] == 6 * 8
    assert set(report["untrained"]) == set(report["trained"]) == {"0", "1"}
    assert all(0.0 <= v <= 1.0 for v in report["trained"].values())
