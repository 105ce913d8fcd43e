"""Exit adapters trained by distillation agree more with the last layer; save/load round-trips."""
import pytest
import torch

from spec_vlm_control.core import exit_training
from spec_vlm_control.core.exit_head import ExitHead
from spec_vlm_control.core.models.synthetic import random_prompt, tiny_llama
from tiny_models import synthetic_image, tiny_qwen2vl_pair
from spec_vlm_control.core.prompts import Qwen2VLPrompts

pytestmark = pytest.mark.slow  # trains exit adapters

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def llama_run():
    target = tiny_llama(seed=7, hidden=32, layers=3)
    train_set = exit_training.collect(target, [random_prompt(s, target.vocab_size) for s in range(48)],
                                      [0, 1], new_tokens=20)
    held_out = exit_training.collect(target, [random_prompt(s, target.vocab_size)
                                              for s in range(100, 116)], [0, 1], new_tokens=20)
    adapters = exit_training.train(target, train_set, steps=400, lr=3e-3, batch=128)
    return target, train_set, held_out, adapters


def test_features_hold_every_generated_position(llama_run):
    target, train_set, _, _ = llama_run
    assert sorted(train_set.exits) == [0, 1]
    assert train_set.final.shape == (len(train_set), target.hidden_size)
    assert all(h.shape == train_set.final.shape for h in train_set.exits.values())
    # the recorded last layer reproduces the logits the target decoded with
    prompt = random_prompt(0, target.vocab_size)
    state = target.prefill(prompt)
    first = int(target.extend(state, [])[-1].argmax())
    assert int(target.head(train_set.final[:1]).argmax()) == first


def test_training_raises_agreement_on_held_out_positions(llama_run):
    target, _, held_out, adapters = llama_run
    before = exit_training.agreement(target, held_out)
    after = exit_training.agreement(target, held_out, adapters)
    assert set(before) == set(after) == {0, 1}
    for layer in (0, 1):
        assert after[layer] >= before[layer] + 0.03, (before, after)
    # the untrained adapter is the identity: same agreement as no adapter at all
    identity = {l: ExitHead.new_adapter(target.hidden_size, target.dtype) for l in (0, 1)}
    assert exit_training.agreement(target, held_out, identity) == before


def test_save_load_round_trip(llama_run, tmp_path):
    target, _, held_out, adapters = llama_run
    before = exit_training.agreement(target, held_out)
    after = exit_training.agreement(target, held_out, adapters)
    meta = {"model": "tiny-llama", "data": "random prompts", "steps": 200,
            "agreement_before": {str(k): v for k, v in before.items()},
            "agreement_after": {str(k): v for k, v in after.items()}}
    exit_training.save(tmp_path, adapters, meta)
    loaded, config = exit_training.load(tmp_path, dtype=target.dtype)
    assert config["exit_layers"] == [0, 1] and config["hidden_size"] == target.hidden_size
    for layer in (0, 1):
        assert torch.equal(loaded[layer].weight, adapters[layer].weight)
        assert torch.equal(loaded[layer].bias, adapters[layer].bias)
    assert exit_training.agreement(target, held_out, loaded) == after
    ready = exit_training.load_exit_adapters(tmp_path, target)
    assert torch.equal(ready[1].weight, adapters[1].weight) and ready[1].weight.dtype == target.dtype
    with pytest.raises(ValueError, match="do not fit"):
        exit_training.load_exit_adapters(tmp_path, tiny_llama(seed=7, hidden=64, layers=3))
    card = (tmp_path / exit_training.CARD).read_text()
    assert "random prompts" in card and f"{after[0]:.1%}" in card


def test_image_instruction_data_on_a_vlm():
    pair = tiny_qwen2vl_pair(seed=3)
    prompts = Qwen2VLPrompts(pair.tokenizer, pair.image_processor)
    images = [prompts.build("go to the red ball", synthetic_image(s)) for s in range(6)]
    features = exit_training.collect(pair.target, images, [1], new_tokens=12)
    assert len(features) == 6 * 12
    adapters = exit_training.train(pair.target, features, steps=60, lr=3e-3)
    before = exit_training.agreement(pair.target, features)[1]
    after = exit_training.agreement(pair.target, features, adapters)[1]
    assert after > before, (before, after)


def test_adapters_for_another_tokenizer_are_refused(llama_run, tmp_path):
    target, _, _, adapters = llama_run
    meta = {"model": "other", "fingerprint": "f" * 64,
            "agreement_before": {"0": 0.0, "1": 0.0}, "agreement_after": {"0": 0.0, "1": 0.0}}
    exit_training.save(tmp_path, adapters, meta)
    with pytest.raises(ValueError, match="another tokenizer"):
        exit_training.load_exit_adapters(tmp_path, target)
