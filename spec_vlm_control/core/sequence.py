"""One request's token stream on one model: the prompt's cache plus the generated tokens.

Both sides keep one: the cloud's follows the committed prefix, the edge's follows whatever
it is drafting from. `tokens` are the generated tokens the model has seen, the last of them
pending (base.py's invariant). Moving to another prefix rolls the cache back to the common
part and feeds only what differs, so a rejected draft costs nothing but the crop. The cloud
may open one `chunked`: its prompt then enters the cache a chunk per pass (`feed_batch`'s
`prompts`) and the sequence takes generated tokens once `unfed` is 0.
"""
from __future__ import annotations

from typing import Optional

import torch

from .models.base import DecoderAdapter, OnLayer, Prompt, RowOnLayer


def common_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Sequence:
    def __init__(self, model: DecoderAdapter, prompt: Prompt, chunked: bool = False):
        self.model = model
        self.state = model.begin(prompt) if chunked else model.prefill(prompt)
        self.prompt_last = self.state.pending
        self.base_length = self.state.cache_length + self.unfed   # with no generated token
        self.tokens: list[int] = []

    @property
    def unfed(self) -> int:
        """Prompt positions not in the cache yet."""
        return 0 if self.state.unfed is None else len(self.state.unfed)

    @property
    def footprint(self) -> int:
        """Positions the cache holds, or will once the prompt is in."""
        return self.state.cache_length + self.unfed

    def feed(self, extra: list[int], on_layer: Optional[OnLayer] = None) -> torch.Tensor:
        """Logits after each of tokens[-1] + extra (len(extra)+1 rows). The caller then
        `settle`s on what it keeps; until then the cache also holds the fed tokens."""
        return self.model.extend(self.state, list(extra), on_layer)

    @staticmethod
    def feed_batch(seqs: list["Sequence"], extras: list[list[int]],
                   on_layer: Optional[RowOnLayer] = None,
                   prompts: list[tuple["Sequence", int]] = ()) -> list[torch.Tensor]:
        """`feed` of several sequences of one model in one pass (row b = seqs[b]); each
        (sequence, positions) of `prompts` feeds that many more of its prompt in it too."""
        model = (seqs or [seq for seq, _ in prompts])[0].model
        return model.extend_batch([s.state for s in seqs], [list(e) for e in extras], on_layer,
                                  [(seq.state, n) for seq, n in prompts])

    def settle(self, tokens: list[int]) -> None:
        """Make `tokens` the generated stream. Its last token becomes pending and the cache
        is cropped to hold the rest; the cache must already hold them (fed or kept)."""
        pending = tokens[-1] if tokens else self.prompt_last
        self.model.crop(self.state, self.base_length + len(tokens), pending)
        self.tokens = list(tokens)

    def predict_after(self, prefix: list[int]) -> torch.Tensor:
        """Logits of the token after `prefix`, reusing the cache of the common part.
        Leaves the cache holding all of prefix; follow with `settle(prefix + [choice])`."""
        keep = common_length(self.tokens, prefix)
        if keep < len(self.tokens):
            self.settle(self.tokens[:keep])
        return self.feed(prefix[keep:])[-1]
