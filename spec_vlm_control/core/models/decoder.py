"""Running a transformers text decoder one layer at a time, the way its own forward does, for
several sequences in one pass, so that exit heads can look at every layer of every sequence
while the pass is still going. Shared by the causal-LM and the vision-language adapters.

Cache layout. Every sequence keeps its own full DynamicCache (every layer keeps every token,
see `full_cache`), so it can be cropped back exactly whatever it was batched with. A pass
over rows b = 0..B-1, row b with L_b cached tokens and n_b new positions, never builds a
batch cache: at each layer, `RowCaches.update` appends row b's n_b new keys/values to its own
cache (the scatter) and hands attention a padded view (the gather), P = max L_b, N = max n_b:

    key slot   [0 ........... P-L_b) [P-L_b ..... P) [P ...... P+n_b) [P+n_b ... P+N)
    row b      left padding (zeros)  its cached keys  its new keys     right padding

so each row's real keys are contiguous and a query at slot P+i of row b is logical position
L_b+i. One explicit 4-D additive mask covers padding (keys before P-L_b), causality (keys
after the query) and sliding windows (key slot <= query slot - window; padding shifts key and
query alike), per layer kind. Positions are per row (1-D, or Qwen2-VL's 3-D M-RoPE); padded
query slots repeat the row's last position and their outputs are dropped. A row may also be a
chunk of a prompt (`extend_batch`'s `chunks`): its embeddings (image features placed) and
positions were computed when the sequence began, it is fed like any row and gives no logits. A batch of one is
the same code with no padding: its view is the row's own cache. A pass that raises restores
every row's cache to its length before the pass, so a failed batch can be re-run row by row.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch
from transformers import DynamicCache

from .base import DecoderAdapter, OnLayer, Prompt, RowOnLayer, SequenceState, crop_cache

Positions = tuple[torch.Tensor, Optional[torch.Tensor]]   # (for the rotary embedding, for layers)


def full_cache() -> DynamicCache:
    """A cache whose every layer keeps every token, sliding-window layers included (their
    window is applied by the mask, see `layer_types`): cropping it is plain slicing, so a
    rollback is exact at any depth. transformers' own sliding layers drop what falls out of
    the window and cannot be rolled back past it."""
    return DynamicCache()


def layer_types(config, num_layers: int) -> list[str]:
    """Each layer's attention kind. Configs without `layer_types` (Mistral) slide every layer
    when `sliding_window` is set, as their model's own forward does."""
    declared = getattr(config, "layer_types", None)
    if declared:
        return list(declared)
    sliding = getattr(config, "sliding_window", None) is not None
    return ["sliding_attention" if sliding else "full_attention"] * num_layers


@dataclass
class Feed:
    """One row's input: embeddings (1, n, d) and their positions, rope (1, n) or (3, 1, n)
    (M-RoPE) and layer (1, n) or None."""

    embeds: torch.Tensor
    rope: torch.Tensor
    layer: Optional[torch.Tensor]

    def __len__(self) -> int:
        return self.embeds.shape[1]

    def split(self, n: int) -> tuple["Feed", Optional["Feed"]]:
        """The first n positions, and the rest (None if nothing is left)."""
        def cut(t, part):
            return None if t is None else (t[..., :n] if part == 0 else t[..., n:])
        head = Feed(self.embeds[:, :n], cut(self.rope, 0), cut(self.layer, 0))
        if n >= len(self):
            return head, None
        return head, Feed(self.embeds[:, n:], cut(self.rope, 1), cut(self.layer, 1))


class RowCaches:
    """The pass's view of its rows' own caches (layout in the module docstring)."""

    def __init__(self, caches: list, lengths: list[int], fed: list[int]):
        self.caches, self.lengths, self.fed = caches, lengths, fed
        self.past, self.width = max(lengths), max(fed)

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        if len(self.caches) == 1:
            return self.caches[0].update(keys, values, layer_idx)
        shape = (keys.shape[0], keys.shape[1], self.past + self.width, keys.shape[3])
        out_k, out_v = keys.new_zeros(shape), values.new_zeros(shape)
        for b, (cache, length, n) in enumerate(zip(self.caches, self.lengths, self.fed)):
            k, v = cache.update(keys[b:b + 1, :, :n], values[b:b + 1, :, :n], layer_idx)
            out_k[b, :, self.past - length:self.past + n] = k[0]
            out_v[b, :, self.past - length:self.past + n] = v[0]
        return out_k, out_v

    def restore(self) -> None:
        """Cut every layer of every row back to its length before the pass."""
        for cache, length in zip(self.caches, self.lengths):
            for layer in getattr(cache, "layers", []):
                keys = getattr(layer, "keys", None)
                if keys is not None and keys.dim() == 4 and keys.shape[-2] > length:
                    layer.keys = layer.keys[..., :length, :]
                    layer.values = layer.values[..., :length, :]


def row_mask(lengths: list[int], fed: list[int], window: Optional[int], dtype, device):
    """The additive (B, 1, N, P+N) mask of the layout above: 0 where a query may attend."""
    past, width = max(lengths), max(fed)
    query = past + torch.arange(width, device=device).view(1, width, 1)
    key = torch.arange(past + width, device=device).view(1, 1, past + width)
    first = past - torch.tensor(lengths, device=device).view(-1, 1, 1)
    allowed = (key <= query) & (key >= first)
    if window is not None:
        allowed &= key > query - window
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def _pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Extend positions (..., n) to (..., width) by repeating the last one."""
    n = t.shape[-1]
    return t if n == width else torch.cat([t, t[..., -1:].expand(*t.shape[:-1], width - n)], -1)


def run_decoder(text_model, rows: list[tuple[SequenceState, Feed]],
                on_layer: Optional[RowOnLayer] = None) -> torch.Tensor:
    """Feed each row's Feed after its cache through every decoder layer of `text_model`
    (layers / rotary_emb, as in transformers' text models), growing each row's cache; return
    the last layer's output before the final norm, (B, N, d), row b valid in [:n_b]."""
    states = [state for state, _ in rows]
    feeds = [feed for _, feed in rows]
    lengths, fed = [s.cache_length for s in states], [len(f) for f in feeds]
    width = max(fed)
    hidden = torch.cat([torch.nn.functional.pad(f.embeds, (0, 0, 0, width - len(f)))
                        for f in feeds])
    rope = torch.cat([_pad(f.rope, width) for f in feeds], dim=-2)
    layer_positions = (None if feeds[0].layer is None
                       else torch.cat([_pad(f.layer, width) for f in feeds], dim=-2))
    config = text_model.config
    kinds = layer_types(config, len(text_model.layers))
    window = getattr(config, "sliding_window", None)
    masks = {kind: row_mask(lengths, fed, window if kind == "sliding_attention" else None,
                            hidden.dtype, hidden.device) for kind in set(kinds)}
    rotary = text_model.rotary_emb(hidden, rope)
    caches = RowCaches([s.cache for s in states], lengths, fed)
    try:
        for i, layer in enumerate(text_model.layers):
            hidden = layer(hidden, attention_mask=masks[kinds[i]], position_embeddings=rotary,
                           position_ids=layer_positions, cache=caches, use_cache=True)
            if on_layer is not None:
                for b, n in enumerate(fed):
                    on_layer(b, i, hidden[b, :n])
    except BaseException:
        caches.restore()
        raise
    for state, n in zip(states, fed):
        state.cache_length += n
    return hidden


class LayeredAdapter(DecoderAdapter):
    """prefill / extend / crop over `run_decoder`, for adapters that say how to embed
    tokens, where a prompt's and a step's positions are, and which text model runs."""

    text_model: torch.nn.Module

    @abstractmethod
    def prompt_feed(self, ids: torch.Tensor, vision: dict) -> tuple[Feed, dict]:
        """The prompt's Feed (all tokens, vision placed) and the state a sequence keeps to
        place later tokens."""

    @abstractmethod
    def step_positions(self, state: SequenceState, n: int) -> Positions:
        """Positions of n tokens fed after the cache."""

    def begin(self, prompt: Prompt) -> SequenceState:
        ids = prompt.input_ids.to(self.device)
        with torch.no_grad():
            feed, extra = self.prompt_feed(ids, prompt.vision)
        state = SequenceState(cache=full_cache(), cache_length=0, pending=int(ids[0, -1]),
                              extra=extra)
        if ids.shape[1] > 1:
            state.unfed = feed.split(ids.shape[1] - 1)[0]
        return state

    def prefill(self, prompt: Prompt) -> SequenceState:
        state = self.begin(prompt)
        if state.unfed is not None:
            self.feed_prompt(state, len(state.unfed))
        return state

    def feed_prompt(self, state: SequenceState, positions: int) -> None:
        self.extend_batch([], [], chunks=[(state, positions)])

    def extend(self, state: SequenceState, tokens: list[int],
               on_layer: Optional[OnLayer] = None) -> torch.Tensor:
        row_hook = None if on_layer is None else (lambda b, layer, hidden: on_layer(layer, hidden))
        return self.extend_batch([state], [tokens], row_hook)[0]

    @torch.no_grad()
    def extend_batch(self, states: list[SequenceState], tokens: list[list[int]],
                     on_layer: Optional[RowOnLayer] = None,
                     chunks: list[tuple[SequenceState, int]] = ()) -> list[torch.Tensor]:
        rows = []
        for state, row in zip(states, tokens):
            ids = torch.tensor([[state.pending, *row]], dtype=torch.long, device=self.device)
            rope, layer = self.step_positions(state, ids.shape[1])
            rows.append((state, Feed(self.text_model.embed_tokens(ids), rope, layer)))
        split = [(state, state.unfed.split(positions)) for state, positions in chunks]
        rows += [(state, chunk) for state, (chunk, _) in split]
        def hook(b: int, layer: int, hidden: torch.Tensor) -> None:
            if b < len(states):                  # prompt rows have no verdict to judge
                on_layer(b, layer, hidden)
        hidden = run_decoder(self.text_model, rows, None if on_layer is None else hook)
        for state, (_, rest) in split:           # only once the pass went through
            state.unfed = rest
        if not states:
            return []
        logits = self.head(hidden[:len(states), :max(len(row) + 1 for row in tokens)])
        return [logits[b, :len(row) + 1] for b, row in enumerate(tokens)]

    def crop(self, state: SequenceState, cache_length: int, pending: int) -> None:
        crop_cache(state.cache, cache_length)
        state.cache_length = cache_length
        state.pending = int(pending)


def text_positions(start: int, n: int, device) -> Positions:
    """1-D positions start..start+n-1, the same for the rotary embedding and the layers."""
    positions = torch.arange(start, start + n, device=device).unsqueeze(0)
    return positions, positions
