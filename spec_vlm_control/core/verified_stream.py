"""Verified tokens toward the controller: the edge's `on_tokens` callback as messages.

Each chunk of newly verified tokens becomes one VerifiedTokens message, numbered from 0 per
request (a gap tells the controller a message was lost), with the text it adds. The text is
decoded over the whole verified prefix and diffed, so a character spread over several tokens
(byte-level vocabularies) appears once, when complete.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from .protocol import VerifiedTokens


class VerifiedStream:
    def __init__(self, request_id: int, publish: Callable[[VerifiedTokens], None],
                 decode: Optional[Callable[[list[int]], str]] = None, stamp_ns: int = 0):
        self.request_id = request_id
        self.publish = publish
        self.decode = decode
        self.stamp_ns = stamp_ns
        self.tokens: list[int] = []
        self.text = ""
        self.seq = 0
        self.final = False        # the final chunk went out: the controller's plan is whole

    def __call__(self, tokens: list[int], final: bool) -> None:
        self.tokens += tokens
        delta = ""
        if self.decode is not None:
            text = self.decode(self.tokens)
            if text.endswith("\ufffd") and not final:     # an incomplete character: wait
                text = text.rstrip("\ufffd")
            # Text already sent cannot be taken back: only what extends it goes out.
            delta = text[len(os.path.commonprefix([text, self.text])):]
            self.text = text
        self.publish(VerifiedTokens(self.request_id, self.seq, list(tokens), delta, final,
                                    self.stamp_ns))
        self.seq += 1
        self.final = final
