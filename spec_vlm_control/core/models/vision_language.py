"""What every VLM adapter shares: the language half of the model, run one decoder layer at a
time exactly as its own forward runs it, with the image placed once at prefill.

VLM families differ only in how the image becomes features and how positions are given
(Qwen2-VL: 3-D M-RoPE positions for the rotary embedding and none for the layers; LLaVA's
Llama: the same 1-D positions for both). A family adapter says those two things; the prompt's
embeddings with the image placed are here, prefill, extend, crop and the batched layer loop
with its hook for the early exits in decoder.py.
"""
from __future__ import annotations

from abc import abstractmethod

import torch

from .decoder import Feed, LayeredAdapter, Positions


class VisionLanguageAdapter(LayeredAdapter):
    """A `*ForConditionalGeneration` VLM whose `.model` holds the vision side and
    `.model.language_model` the decoder; `.lm_head` on top."""

    def __init__(self, model, eos_token_ids=(), tokenizer_hash: str = ""):
        self.model = model.eval()
        self.vlm = model.model
        self.lm = self.text_model = model.model.language_model
        self.lm_head = model.lm_head
        self.norm = self.lm.norm
        self.tokenizer_hash = tokenizer_hash
        text = model.config.text_config
        self.num_layers = text.num_hidden_layers
        self.hidden_size = text.hidden_size
        self.vocab_size = text.vocab_size
        self.image_token_id = model.config.image_token_id
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids or _eos_ids(model))
        param = next(model.parameters())
        self.dtype, self.device = param.dtype, param.device

    @abstractmethod
    def prompt_positions(self, ids: torch.Tensor, vision: dict) -> tuple[Positions, dict]:
        """Positions of all prompt tokens, and the state a sequence keeps to place later ones."""

    @abstractmethod
    def image_features(self, vision: dict) -> torch.Tensor:
        """One row per image placeholder token, in prompt order."""

    def prompt_feed(self, ids: torch.Tensor, vision: dict) -> tuple[Feed, dict]:
        if ids[0, -1].item() == self.image_token_id:
            raise ValueError("a prompt must end with text, not with an image token")
        (rope, layer), extra = self.prompt_positions(ids, vision)
        hidden = self.lm.embed_tokens(ids)
        if "pixel_values" in vision:
            hidden = place_features(ids, hidden, self.image_features(vision), self.image_token_id)
        return Feed(hidden, rope, layer), extra

    def fingerprint(self) -> str:
        return self.tokenizer_hash


def place_features(ids: torch.Tensor, hidden: torch.Tensor, features: torch.Tensor,
                   token_id: int) -> torch.Tensor:
    """Put one feature row at each placeholder token (masked_scatter, as the models do)."""
    mask = (ids == token_id).unsqueeze(-1)
    if int(mask.sum()) != features.shape[0]:
        raise ValueError(f"prompt has {int(mask.sum())} image tokens but the image gives "
                         f"{features.shape[0]} features")
    return hidden.masked_scatter(mask, features.to(hidden.dtype))


def _eos_ids(model) -> list[int]:
    """EOS ids from the generation config, else the text config."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = model.config.text_config.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)
