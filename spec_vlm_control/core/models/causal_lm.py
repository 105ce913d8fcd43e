"""DecoderAdapter for Llama-family Hugging Face causal LMs (Llama 2/3, Vicuna, SmolLM2,
Qwen2, Mistral): the model's own modules run one decoder layer at a time, so an exit head can
look at every layer while the pass is still going, and the last layer's logits are exactly
what `model(...)` returns.
"""
from __future__ import annotations

import torch

from .base import SequenceState
from .decoder import Feed, LayeredAdapter, Positions, text_positions


class CausalLMAdapter(LayeredAdapter):
    def __init__(self, model, eos_token_ids=(), tokenizer_hash: str = ""):
        self.model = model.eval()
        self.body = self.text_model = model.model
        config = model.config
        self.config = config
        self.num_layers = config.num_hidden_layers
        self.hidden_size = config.hidden_size
        self.vocab_size = config.vocab_size
        eos = eos_token_ids or ([config.eos_token_id] if isinstance(config.eos_token_id, int)
                                else list(config.eos_token_id or []))
        self.eos_token_ids = frozenset(int(t) for t in eos)
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.norm = self.body.norm
        self.lm_head = model.lm_head
        self.tokenizer_hash = tokenizer_hash

    def fingerprint(self) -> str:
        return self.tokenizer_hash

    def prompt_feed(self, ids: torch.Tensor, vision: dict) -> tuple[Feed, dict]:
        return Feed(self.body.embed_tokens(ids), *text_positions(0, ids.shape[1], self.device)), {}

    def step_positions(self, state: SequenceState, n: int) -> Positions:
        return text_positions(state.cache_length, n, self.device)
