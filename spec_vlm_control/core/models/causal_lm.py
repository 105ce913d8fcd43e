"""DecoderAdapter for Llama-family Hugging Face causal LMs (Llama 2/3, Vicuna, SmolLM2,
Qwen2, Mistral): the model's own modules run one decoder layer at a time, so an exit head can
look at every layer while the pass is still going, and the last layer's logits are exactly
what `model(...)` returns.
"""
from __future__ import annotations

from typing import Optional

import torch
from .base import DecoderAdapter, OnLayer, Prompt, SequenceState, crop_cache
from .decoder import full_cache, run_decoder


class CausalLMAdapter(DecoderAdapter):
    def __init__(self, model, eos_token_ids=(), tokenizer_hash: str = ""):
        self.model = model.eval()
        self.body = model.model
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

    @torch.inference_mode()
    def _run(self, cache, start: int, ids: list[int], on_layer: Optional[OnLayer]) -> torch.Tensor:
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        position_ids = torch.arange(start, start + len(ids), device=self.device).unsqueeze(0)
        h = run_decoder(self.body, self.body.embed_tokens(input_ids),
                        (position_ids, position_ids), cache, on_layer)
        return self.head(h[0])

    def prefill(self, prompt: Prompt) -> SequenceState:
        ids = prompt.input_ids[0].tolist()
        cache = full_cache()
        if len(ids) > 1:
            self._run(cache, 0, ids[:-1], None)
        return SequenceState(cache=cache, cache_length=len(ids) - 1, pending=ids[-1])

    def extend(self, state: SequenceState, tokens: list[int],
               on_layer: Optional[OnLayer] = None) -> torch.Tensor:
        logits = self._run(state.cache, state.cache_length, [state.pending, *tokens], on_layer)
        state.cache_length += len(tokens) + 1
        return logits

    def crop(self, state: SequenceState, cache_length: int, pending: int) -> None:
        crop_cache(state.cache, cache_length)
        state.cache_length = cache_length
        state.pending = int(pending)
