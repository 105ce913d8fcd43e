"""The contract every model adapter meets, so the engine never touches a model class.

A *sequence* is one request's token stream: the prompt, then generated tokens. Its KV cache
always holds every token but the last one fed (``pending``), so that verifying a draft block
and decoding one token are the same operation: ``extend(state, pending + draft)``. The cache
can be cropped back exactly, which is how a rejected draft is rolled back.

Layer-by-layer execution (``extend`` with ``on_layer``) is what the target pass needs:
after each decoder layer the adapter hands the hidden states to a callback, which may run an
exit head on them and send an early verdict while later layers are still running.

The cloud feeds many sequences in one pass (``extend_batch``; core/models/decoder.py says how
the transformers adapters batch them) and may feed a long prompt in chunks (``begin`` then
``feed_prompt``). Adapters that cannot batch (lookup tables, scripted stand-ins) inherit
defaults that run the rows one by one and prefill at once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch


@dataclass
class Prompt:
    """Model-ready prompt: token ids plus whatever vision inputs the model needs."""

    input_ids: torch.Tensor                      # (1, n) long
    vision: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. pixel_values, image_grid_thw
    text: str = ""                                # the rendered prompt, for logs


@dataclass
class SequenceState:
    """One sequence's decoding state: cache plus the token that is not in it yet."""

    cache: Any                                    # adapter-specific (a transformers Cache)
    cache_length: int                             # tokens held by the cache
    pending: int                                  # last fed token id, not yet in the cache
    extra: dict = field(default_factory=dict)     # adapter state (e.g. Qwen2-VL rope delta)
    unfed: Any = None                             # prompt positions not fed yet (chunked
                                                  # prefill, len() of them); None once fed


OnLayer = Callable[[int, torch.Tensor], None]
"""Called as on_layer(layer_index, hidden) after decoder layer `layer_index` (0-based),
hidden of shape (n, hidden_size) for the n positions just fed."""

RowOnLayer = Callable[[int, int, torch.Tensor], None]
"""Batched passes: on_layer(row, layer_index, hidden) for each row of the batch after each
layer, hidden of shape (n_row, hidden_size) for that row's positions (no padding)."""


def crop_cache(cache: Any, length: int) -> None:
    """Cut a transformers Cache back to its first `length` tokens (exact: keys/values are
    sliced, never recomputed). transformers 5.x `Cache.crop` takes the number of tokens to
    remove as a negative int; a positive value raises."""
    excess = cache.get_seq_length() - length
    if excess < 0:
        raise ValueError(f"cannot crop a cache of {cache.get_seq_length()} tokens to {length}")
    if excess:
        cache.crop(-excess)


class DecoderAdapter(ABC):
    """A causal decoder (LM or the language half of a VLM) driven token block by token block.

    `norm` and `lm_head` are the model's own final norm and LM head modules; exit heads reuse
    them (core/exit_head.py), and `head` applies them to hidden states of any layer.
    """

    num_layers: int
    hidden_size: int
    vocab_size: int
    eos_token_ids: frozenset[int]
    dtype: torch.dtype
    device: torch.device
    norm: torch.nn.Module
    lm_head: torch.nn.Module

    @abstractmethod
    def prefill(self, prompt: Prompt) -> SequenceState:
        """Encode the prompt (vision included) except its last token, which becomes pending."""

    @abstractmethod
    def extend(self, state: SequenceState, tokens: list[int],
               on_layer: Optional[OnLayer] = None) -> torch.Tensor:
        """Feed [state.pending] + tokens and return the final layer's logits, shape
        (len(tokens) + 1, vocab): row i predicts the token after the i-th token fed.
        Afterwards the cache holds every token fed; the caller settles the state with
        `crop` once it knows what was committed (e.g. accepted n of k drafts plus a next
        token t: crop(state, old_cache_length + 1 + n, pending=t))."""

    def extend_batch(self, states: list[SequenceState], tokens: list[list[int]],
                     on_layer: Optional[RowOnLayer] = None,
                     chunks: list[tuple[SequenceState, int]] = ()) -> list[torch.Tensor]:
        """`extend` of several sequences in one pass: row b feeds [states[b].pending] +
        tokens[b] and gets its logits; each (state, positions) of `chunks` feeds that many
        more of its prompt in the same pass (no logits). This default runs the rows one by
        one; adapters that batch override it (and make `extend` the batch of one)."""
        for state, positions in chunks:
            self.feed_prompt(state, positions)
        return [self.extend(state, row, None if on_layer is None
                            else (lambda layer, hidden, b=b: on_layer(b, layer, hidden)))
                for b, (state, row) in enumerate(zip(states, tokens))]

    def begin(self, prompt: Prompt) -> SequenceState:
        """Like `prefill`, but the cache may not hold the prompt yet: `state.unfed` then says
        what `feed_prompt` still has to feed. This default prefills at once."""
        return self.prefill(prompt)

    def feed_prompt(self, state: SequenceState, positions: int) -> None:
        """Feed up to `positions` more of the prompt (only while `state.unfed`)."""
        raise NotImplementedError

    @abstractmethod
    def crop(self, state: SequenceState, cache_length: int, pending: int) -> None:
        """Roll the cache back to `cache_length` tokens and set the pending token."""

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Shared final norm + LM head: hidden (n, d) -> logits (n, vocab)."""
        return self.lm_head(self.norm(hidden))

    def fingerprint(self) -> str:
        """Hash of the tokenizer vocabulary, for the handshake (see core/models/tokenizer.py)."""
        raise NotImplementedError
