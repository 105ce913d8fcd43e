"""SmolLM2-135M-Instruct GGUF -> cached safetensors -> adapter (one conversion, ~20-40 s)."""
import time

import numpy as np
import pytest
import torch
from gguf import GGUFReader, dequantize

from spec_vlm_control.core.models.causal_lm import CausalLMAdapter
from spec_vlm_control.core.models.gguf import ensure_safetensors, packaged_gguf
from spec_vlm_control.core.models.loading import load_model

pytestmark = pytest.mark.slow  # converts a 135M-parameter GGUF model (~35 s)

torch.set_num_threads(1)
ALIAS = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = tmp_path_factory.mktemp("gguf-cache")
    return cache, ensure_safetensors(ALIAS, cache)


def gguf_tensors(*names: str) -> list[torch.Tensor]:
    """Dequantized straight from the file with the gguf package (an independent reader)."""
    tensors = {t.name: t for t in GGUFReader(str(packaged_gguf(ALIAS))).tensors}
    return [torch.from_numpy(np.array(dequantize(tensors[n].data, tensors[n].tensor_type),
                                      dtype=np.float32)) for n in names]


def test_cached_copy_is_reused(converted):
    cache, folder = converted
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    started = time.perf_counter()
    assert ensure_safetensors(packaged_gguf(ALIAS), cache) == folder
    assert time.perf_counter() - started < 1.0          # no second conversion
    assert [p.name for p in cache.iterdir()] == [folder.name]


def test_weights_equal_the_gguf_tensors(converted):
    loaded = load_model(str(converted[1]))
    model = loaded.adapter.model
    assert isinstance(loaded.adapter, CausalLMAdapter)
    embed, down, norm = gguf_tensors("token_embd.weight", "blk.3.ffn_down.weight",
                                     "output_norm.weight")
    assert torch.equal(model.model.embed_tokens.weight, embed)
    assert torch.equal(model.model.layers[3].mlp.down_proj.weight, down)
    assert torch.equal(model.model.norm.weight, norm)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_adapter_decodes_like_generate_and_answers(converted):
    loaded = load_model(str(converted[1]))
    assert loaded.adapter.eos_token_ids == {2} and loaded.adapter.num_layers == 30
    prompt = loaded.prompts.build("What is the capital of France?")
    state = loaded.adapter.prefill(prompt)
    tokens = []
    for _ in range(8):
        token = int(loaded.adapter.extend(state, [])[-1].argmax())
        loaded.adapter.crop(state, state.cache_length, pending=token)
        tokens.append(token)
    with torch.no_grad():
        ref = loaded.adapter.model.generate(prompt.input_ids, do_sample=False, max_new_tokens=8)
    assert tokens == ref[0, prompt.input_ids.shape[1]:].tolist()
    assert "Paris" in loaded.tokenizer.decode(tokens)
