"""Load a model by spec into a DecoderAdapter plus its tokenizer and prompt builder.

A spec is a local folder, a Hugging Face repo id that is already in the local HF cache
(nothing is ever downloaded: `local_files_only`), a `.gguf` file, or an alias of a GGUF file
that an installed package ships (gguf.PACKAGED). The model family is read from
`config.model_type` and picks the adapter and the prompt builder. A draft/target pair is
loaded with `load_pair`, which refuses tokenizers that differ.

A spec that names nothing raises ModelNotFound (a FileNotFoundError), one that cannot be
loaded (no config, corrupt weights, a file that is not GGUF, an unsupported family) raises
ModelError (a ValueError); both are UserErrors whose message names the model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..user_errors import UserError, one_line
from .base import DecoderAdapter
from .tokenizer import check_same_tokenizer, tokenizer_fingerprint

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
          "fp64": torch.float64}

CAUSAL_LM_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
QWEN2_VL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl"})
LLAVA_TYPES = frozenset({"llava"})


class ModelNotFound(UserError, FileNotFoundError):
    """The spec names no local folder, cached repo or GGUF file."""


class ModelError(UserError, ValueError):
    """The model exists but cannot be loaded."""


@dataclass
class LoadedModel:
    adapter: DecoderAdapter
    tokenizer: object
    prompts: object              # TextPrompts / Qwen2VLPrompts: .build(instruction, image)
    fingerprint: str             # tokenizer fingerprint, for the handshake
    path: Path                   # the folder the weights came from


def hub_cache_dir() -> Path:
    """The HF hub cache, read from the environment at call time (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def resolve(spec: str, revision: Optional[str] = None) -> Path:
    """The local folder holding `spec`'s files; never touches the network."""
    from . import gguf
    if spec.endswith(".gguf") or spec in gguf.PACKAGED:
        return gguf.ensure_safetensors(spec)
    if Path(spec).is_dir():
        if not (Path(spec) / "config.json").is_file():
            raise ModelError(f"{spec}: no config.json (not a Hugging Face model folder)")
        return Path(spec)
    if Path(spec).exists():
        raise ModelError(f"{spec}: not a model folder or a .gguf file")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(repo_id=spec, revision=revision, cache_dir=hub_cache_dir(),
                                      local_files_only=True))
    except Exception as exc:
        raise ModelNotFound(
            f"{spec!r} is neither a local folder nor in the local HF cache {hub_cache_dir()} "
            "(models are never downloaded at run time; fetch it beforehand or pass a path)"
        ) from exc


def load_model(spec: str, dtype: str = "fp32", device: str = "cpu",
               revision: Optional[str] = None) -> LoadedModel:
    """Raises ModelNotFound or ModelError (see the module docstring), never a library's
    own error about the user's files."""
    from safetensors import SafetensorError
    if dtype not in DTYPES:
        raise ModelError(f"{spec}: dtype {dtype!r} is not one of {sorted(DTYPES)}")
    try:
        return _load(spec, resolve(spec, revision), dtype, device)
    except UserError:
        raise
    except FileNotFoundError as exc:
        raise ModelNotFound(f"{spec}: {one_line(exc)}") from exc
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise ModelError(f"cannot load {spec}: {one_line(exc)}") from exc


def _load(spec: str, path: Path, dtype: str, device: str) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = _processor_chat_template(path)
    fingerprint = tokenizer_fingerprint(tokenizer)
    kwargs = dict(dtype=DTYPES[dtype], local_files_only=True)
    if config.model_type in QWEN2_VL_TYPES:
        from ..prompts import Qwen2VLPrompts
        from .qwen2_vl import Qwen2VLAdapter
        adapter = Qwen2VLAdapter(_vlm(path, kwargs, device), tokenizer_hash=fingerprint)
        prompts = Qwen2VLPrompts(tokenizer, pil_image_processor(path))
    elif config.model_type in LLAVA_TYPES:
        from ..prompts import ProcessorPrompts
        from .llava import LlavaAdapter
        adapter = LlavaAdapter(_vlm(path, kwargs, device), tokenizer_hash=fingerprint)
        prompts = ProcessorPrompts(_llava_processor(path, config, tokenizer))
    elif config.model_type in CAUSAL_LM_TYPES:
        from transformers import AutoModelForCausalLM
        from ..prompts import TextPrompts
        from .causal_lm import CausalLMAdapter
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device)
        eos = model.generation_config.eos_token_id
        adapter = CausalLMAdapter(model, eos_token_ids=[eos] if isinstance(eos, int) else eos or (),
                                  tokenizer_hash=fingerprint)
        prompts = TextPrompts(tokenizer)
    else:
        raise ModelError(f"{spec}: model type {config.model_type!r} has no adapter (supported: "
                         f"{sorted(CAUSAL_LM_TYPES | QWEN2_VL_TYPES | LLAVA_TYPES)})")
    return LoadedModel(adapter, tokenizer, prompts, fingerprint, path)


def _vlm(path: Path, kwargs: dict, device: str):
    from transformers import AutoModelForImageTextToText
    return AutoModelForImageTextToText.from_pretrained(path, **kwargs).to(device)


def pil_image_processor(path: Path):
    """The PIL-backed twin of a folder's image processor: the default ones need torchvision,
    which does not import beside the pinned CPU torch."""
    import json
    import transformers
    kind = json.loads((path / "preprocessor_config.json").read_text())["image_processor_type"]
    kind = kind.removesuffix("Fast")
    if kind == "CoordinateImageProcessor":
        from .coordinate_processor import CoordinateImageProcessor
        return CoordinateImageProcessor.from_pretrained(path)
    cls = getattr(transformers, kind if kind.endswith("Pil") else kind + "Pil", None)
    return (cls or getattr(transformers, kind)).from_pretrained(path)


def _llava_processor(path: Path, config, tokenizer):
    """LlavaProcessor around the PIL image processor; placeholder-count settings come from
    processor_config.json when the folder has one, else from the model config."""
    import json
    from transformers import LlavaProcessor
    saved = path / "processor_config.json"
    settings = json.loads(saved.read_text()) if saved.is_file() else {}
    return LlavaProcessor(
        image_processor=pil_image_processor(path), tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        patch_size=settings.get("patch_size", config.vision_config.patch_size),
        vision_feature_select_strategy=settings.get("vision_feature_select_strategy",
                                                    config.vision_feature_select_strategy),
        num_additional_image_tokens=settings.get(   # CLIP towers add a CLS token
            "num_additional_image_tokens", int(config.vision_config.model_type == "clip_vision_model")))


def _processor_chat_template(path: Path) -> Optional[str]:
    """VLM repos often keep the chat template beside the processor, not in the tokenizer."""
    import json
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text())["chat_template"]
    return None


def load_pair(draft: str, target: str, dtype: str = "fp32", device: str = "cpu",
              draft_device: Optional[str] = None) -> tuple[LoadedModel, LoadedModel]:
    """Draft and target, refused (TokenizerMismatch) unless they share a tokenizer."""
    loaded_draft = load_model(draft, dtype, draft_device or device)
    loaded_target = load_model(target, dtype, device)
    check_same_tokenizer(loaded_draft.tokenizer, loaded_target.tokenizer)
    return loaded_draft, loaded_target


def load_pair_config(path: str | Path) -> tuple[LoadedModel, LoadedModel]:
    """A pair described by a YAML file with keys draft, target and optional dtype, device,
    draft_device (see config/models/)."""
    import yaml
    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict) or not {"draft", "target"} <= set(spec):
        raise ModelError(f"{path}: a model pair file needs the keys draft and target")
    return load_pair(spec["draft"], spec["target"], spec.get("dtype", "fp32"),
                     spec.get("device", "cpu"), spec.get("draft_device"))
