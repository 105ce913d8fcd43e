"""The committed prefix and its hash: how edge and cloud name "the generated tokens so far".

Every draft block and verdict carries (assumed_length, assumed_hash), so either side can tell
whether a message is about the prefix it holds without trusting delivery order.

prefix_hash: 64-bit FNV-1a over the generated token ids, each as 4 little-endian bytes
(int32), starting from the FNV offset basis 0xcbf29ce484222325 with prime 0x100000001b3.
The prompt is fixed per request and not hashed. The hash of the empty prefix is the offset
basis. It is incremental, so a side can keep the hash of every prefix length cheaply, and it
is the same in every process and on every machine (unlike Python's hash()).
"""
from __future__ import annotations

from typing import Iterable

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def extend_hash(h: int, token: int) -> int:
    for byte in (int(token) & 0xFFFFFFFF).to_bytes(4, "little"):
        h = ((h ^ byte) * FNV_PRIME) & _MASK
    return h


def prefix_hash(tokens: Iterable[int]) -> int:
    h = FNV_OFFSET
    for t in tokens:
        h = extend_hash(h, t)
    return h


class CommittedPrefix:
    """Generated tokens known to be final, with the hash of every prefix length."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.hashes: list[int] = [FNV_OFFSET]

    def __len__(self) -> int:
        return len(self.tokens)

    def append(self, tokens: Iterable[int]) -> None:
        for t in tokens:
            self.tokens.append(int(t))
            self.hashes.append(extend_hash(self.hashes[-1], t))

    def hash(self, length: int | None = None) -> int:
        return self.hashes[len(self.tokens) if length is None else length]

    def names(self, length: int, h: int) -> bool:
        """Whether (length, h) names a prefix of this one (the committed state or an older one)."""
        return 0 <= length <= len(self.tokens) and self.hashes[length] == h
