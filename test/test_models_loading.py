"""Loading by path, by repo id from a fake local HF cache (no network), pairs and dtypes."""
import shutil

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from spec_vlm_control.core.models.causal_lm import CausalLMAdapter
from spec_vlm_control.core.models.loading import load_model, load_pair, load_pair_config
from spec_vlm_control.core.models.qwen2_vl import Qwen2VLAdapter
from tiny_models import (
    synthetic_image, tiny_image_processor, tiny_qwen2vl_model, tiny_qwen2vl_tokenizer)
from spec_vlm_control.core.models.tokenizer import TokenizerMismatch, tokenizer_fingerprint

torch.set_num_threads(1)


def save_tiny_vlm(folder, seed=0):
    tokenizer = tiny_qwen2vl_tokenizer()
    model = tiny_qwen2vl_model(tokenizer, seed, dtype=torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    tiny_image_processor().save_pretrained(folder)
    return model, tokenizer


def save_tiny_llama(folder, tokenizer, seed=0):
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def fake_hub_cache(home, repo_id, folder):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<sha>/...}."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)


@pytest.fixture(scope="module")
def saved_vlm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-qwen2vl")
    model, tokenizer = save_tiny_vlm(folder)
    return folder, model, tokenizer


def last_logits(loaded, image_seed=0):
    prompt = loaded.prompts.build("go to the red ball", synthetic_image(image_seed))
    state = loaded.adapter.prefill(prompt)
    return prompt, loaded.adapter.extend(state, [])[-1]


def test_load_vlm_by_path_gives_the_saved_model(saved_vlm):
    folder, model, tokenizer = saved_vlm
    loaded = load_model(str(folder))
    assert isinstance(loaded.adapter, Qwen2VLAdapter)
    assert loaded.fingerprint == tokenizer_fingerprint(tokenizer) == loaded.adapter.fingerprint()
    prompt, logits = last_logits(loaded)
    ids = prompt.input_ids
    with torch.no_grad():
        ref = model(input_ids=ids, mm_token_type_ids=(ids == model.config.image_token_id).int(),
                    **prompt.vision).logits[0, -1]
    assert (logits - ref).abs().max() <= 1e-4
    assert loaded.prompts.image_processor.patch_size == tiny_image_processor().patch_size


def test_load_by_repo_id_from_local_hf_cache_only(saved_vlm, tmp_path, monkeypatch):
    folder, _, _ = saved_vlm
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    fake_hub_cache(tmp_path, "spec-vlm-test/tiny-qwen2vl", folder)
    by_id = load_model("spec-vlm-test/tiny-qwen2vl")
    assert str(by_id.path).startswith(str(tmp_path))
    assert torch.equal(last_logits(by_id)[1], last_logits(load_model(str(folder)))[1])
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_model("spec-vlm-test/not-in-the-cache")


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_dtype(saved_vlm, dtype):
    loaded = load_model(str(saved_vlm[0]), dtype=dtype)
    assert loaded.adapter.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    assert last_logits(loaded)[1].dtype == loaded.adapter.dtype


def test_pair_by_config_and_mismatch_refused(saved_vlm, tmp_path):
    folder, _, tokenizer = saved_vlm
    save_tiny_llama(tmp_path / "llama", tokenizer)
    config = tmp_path / "pair.yaml"
    config.write_text(yaml.safe_dump({"draft": str(tmp_path / "llama"), "target": str(folder)}))
    draft, target = load_pair_config(config)
    assert isinstance(draft.adapter, CausalLMAdapter) and isinstance(target.adapter, Qwen2VLAdapter)
    assert draft.fingerprint == target.fingerprint
    assert draft.adapter.eos_token_ids == {tokenizer.eos_token_id}

    other = tiny_qwen2vl_tokenizer()
    other.add_tokens(["<|robot|>"])
    save_tiny_llama(tmp_path / "other", other)
    with pytest.raises(TokenizerMismatch):
        load_pair(str(tmp_path / "other"), str(folder))


def test_text_model_loads_with_text_prompts(saved_vlm, tmp_path):
    model = save_tiny_llama(tmp_path / "llama", saved_vlm[2], seed=3)
    loaded = load_model(str(tmp_path / "llama"))
    prompt = loaded.prompts.build("stop")
    state = loaded.adapter.prefill(prompt)
    with torch.no_grad():
        ref = model(input_ids=prompt.input_ids).logits[0, -1]
    assert (loaded.adapter.extend(state, [])[-1] - ref).abs().max() <= 1e-4


def test_unknown_model_type_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=300)).save_pretrained(tmp_path)
    tiny_qwen2vl_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no adapter"):
        load_model(str(tmp_path))


def test_shipped_pair_configs_name_a_draft_and_a_target(tmp_path, monkeypatch):
    from pathlib import Path
    folder = Path(__file__).resolve().parent.parent / "config" / "models"
    configs = sorted(folder.glob("*.yaml"))
    assert {p.name for p in configs} >= {"vicuna68m_llama2_7b.yaml", "qwen2vl_2b_7b.yaml"}
    for path in configs:
        spec = yaml.safe_load(path.read_text())
        assert spec["draft"] != spec["target"] and spec["dtype"] in ("fp32", "fp16", "bf16")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))                 # an empty cache: no download
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_pair_config(folder / "vicuna68m_llama2_7b.yaml")
