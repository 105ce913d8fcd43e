"""Tokenizer identity: a draft and its target must map the same ids to the same text.

Speculative decoding compares token ids across two models, so a pair whose vocabularies
differ would verify nonsense without any error. The fingerprint is a sha256 over the
vocabulary (token -> id, added special tokens included) and the BOS/EOS/UNK tokens; it
travels in the request handshake so that a mismatch is refused across processes too, and
`check_same_tokenizer` refuses it in one process. The padding token is left out: it never
reaches a decoder here, and checkpoints of one family often differ only in it.
"""
from __future__ import annotations

import hashlib
import json

from ..user_errors import UserError


class TokenizerMismatch(UserError, ValueError):
    """A draft/target pair whose tokenizers differ."""


def _identity(tokenizer) -> dict:
    vocab = tokenizer.get_vocab()
    specials = {name: str(getattr(tokenizer, name, None))
                for name in ("bos_token", "eos_token", "unk_token")}
    return {"vocab": sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])), "specials": specials}


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 hex digest of (vocabulary sorted by id, BOS/EOS/UNK tokens)."""
    blob = json.dumps(_identity(tokenizer), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def check_same_tokenizer(draft, target) -> str:
    """Return the shared fingerprint, or raise TokenizerMismatch saying what differs."""
    a, b = tokenizer_fingerprint(draft), tokenizer_fingerprint(target)
    if a == b:
        return a
    da, db = _identity(draft), _identity(target)
    if len(da["vocab"]) != len(db["vocab"]):
        detail = f"vocabulary sizes differ: draft {len(da['vocab'])}, target {len(db['vocab'])}"
    elif da["vocab"] != db["vocab"]:
        (tok_a, id_a), (tok_b, id_b) = next(
            (x, y) for x, y in zip(da["vocab"], db["vocab"]) if x != y)
        detail = f"first differing entry: draft {tok_a!r}={id_a}, target {tok_b!r}={id_b}"
    else:
        detail = f"special tokens differ: draft {da['specials']}, target {db['specials']}"
    raise TokenizerMismatch(
        f"draft and target tokenizers differ ({detail}; fingerprints {a[:12]} vs {b[:12]}); "
        "speculative decoding needs a pair that shares one tokenizer")
