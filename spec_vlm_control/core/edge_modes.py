"""The edge's part of each decoding mode: what to draft next and what becomes of the block.

One policy per request, chosen from DecodingParams.mode when the EdgeSession is made (as
gpt-fast chooses speculative or plain decoding once). A policy only decides: `next_draft`
names what to feed the draft model (a prefix and a token count), `drafted` what to send of
the result. The session runs the draft passes and keeps the shared machinery (verified
prefix, the blocks in flight, link handling, resends, deadlines, cloud epochs), and tells
the policy what it heard through the hooks of Plain; each default is what an edge-led mode
does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .protocol import MAX_BLOCK_TOKENS, DecodingParams, DraftBlock, Verdict

if TYPE_CHECKING:
    from .edge import EdgeConfig, EdgeSession


@dataclass
class Outstanding:
    """A block the edge has drafted (and, unless held for preemption, sent)."""

    message: DraftBlock
    prefix: list[int]                         # the generated tokens the block assumes
    guess: Optional[int] = None               # the draft's own next token after the block
    speculative: bool = False                 # drafted from a predicted, not verified, prefix
    sent_at: float = 0.0
    early: Optional[tuple[int, int]] = None   # (accepted, next_token) of the early verdict

    @property
    def tokens(self) -> list[int]:
        return self.message.tokens

    def predicted_end(self) -> Optional[list[int]]:
        if self.early is not None:
            n, t = self.early
            return self.prefix + self.tokens[:n] + [t]
        if self.guess is not None:
            return self.prefix + self.tokens + [self.guess]
        return None


@dataclass
class Draft:
    """What a policy asks the session to feed the draft model: `count` tokens after `prefix`
    (the verified prefix or a predicted one) and, with `guess`, the draft's own next token
    after them."""

    prefix: list[int]
    count: int
    guess: bool = False


def extends(longer: list[int], shorter: list[int]) -> bool:
    return len(longer) >= len(shorter) and longer[: len(shorter)] == shorter


class Plain:
    """plain and early_exit (the base of the others): draft a block from the verified prefix, send it, wait for its
    final verdict, repeat (early verdicts are only counted, by the session)."""

    def next_draft(self, s: EdgeSession) -> Optional[Draft]:
        """What to draft now, or None to wait (a pure question: has_work asks it too)."""
        return None if s.inflight else self.block_after(s, s.tokens)

    def drafted(self, s: EdgeSession, draft: Draft, tokens: list[int], rows: list,
                guess: Optional[int]) -> None:
        s.send_block(s.new_block(draft.prefix, tokens, rows, guess))

    def on_final(self, s: EdgeSession, v: Verdict, block: Optional[Outstanding]) -> None:
        """A final verdict, before the session adopts it; `block` is None when it answers
        no block in flight (late, duplicated or stale)."""
        if block is not None:
            s.tally.judged(v, block.tokens)

    def on_commit(self, s: EdgeSession, fresh: int) -> None:
        """CommittedTokens with `fresh` new tokens, before the session adopts them."""

    def prune(self, s: EdgeSession, known: list[int]) -> None:
        """The verified prefix is now `known`; the session has dropped the blocks in flight
        that contradict it."""

    def resend(self, s: EdgeSession) -> None:
        """No progress for resend_after_s; the session has resent its blocks in flight."""

    def finish(self, s: EdgeSession) -> None:
        """The request ended: count what was drafted and never sent as wasted."""

    @staticmethod
    def block_after(s: EdgeSession, prefix: list[int], guess: bool = False) -> Draft:
        """k tokens after `prefix` (fewer near max_new_tokens; the verdict adds one)."""
        p = s.params
        return Draft(prefix, max(0, min(p.block_size, p.max_new_tokens - len(prefix) - 1)), guess)

    @staticmethod
    def worth_drafting(s: EdgeSession, prefix: Optional[list[int]]) -> bool:
        return prefix is not None and len(prefix) < s.params.max_new_tokens \
            and not any(t in s.draft.eos_token_ids for t in prefix[len(s.tokens):])


class Preemptive(Plain):
    """On an early verdict, draft the next block from the predicted prefix while the cloud
    is still verifying, and hold it; if the final verdict agrees the block is sent at once
    (hit), otherwise it is thrown away (miss) and the next block drafted from the real
    prefix."""

    def __init__(self) -> None:
        self.held: Optional[Outstanding] = None

    def next_draft(self, s: EdgeSession) -> Optional[Draft]:
        if not s.inflight:
            return self.block_after(s, s.tokens)
        if self.held is None and s.inflight[0].early is not None:
            prefix = s.inflight[0].predicted_end()
            if self.worth_drafting(s, prefix):
                return self.block_after(s, prefix)
        return None

    def drafted(self, s: EdgeSession, draft: Draft, tokens: list[int], rows: list,
                guess: Optional[int]) -> None:
        block = s.new_block(draft.prefix, tokens, rows, guess)
        if block.speculative:
            self.held = block
        else:
            s.send_block(block)

    def prune(self, s: EdgeSession, known: list[int]) -> None:
        if self.held is None or s.inflight:
            return
        held, self.held = self.held, None
        if held.prefix == known:
            s.tally.preemptive_hits += 1
            held.speculative = False
            s.send_block(held)
        else:
            s.drop(held)

    def finish(self, s: EdgeSession) -> None:
        if self.held is not None:
            s.tally.wasted_draft_tokens += len(self.held.tokens)
            self.held = None


class Pipelined(Plain):
    """Blocks are sent as soon as they are drafted, each tagged with the prefix it assumes;
    up to `depth` are in flight, the first from the verified prefix, each next one from the
    previous block's predicted outcome (its early verdict if one arrived, else "all
    accepted, then the draft's own next token"). Blocks whose assumption turns out wrong are
    dropped here (by the session) and by the cloud."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def next_draft(self, s: EdgeSession) -> Optional[Draft]:
        """From the most likely prefix no block assumes yet: the verified one, then
        predictions from early verdicts, then "all accepted" guesses."""
        if len(s.inflight) >= self.depth:
            return None
        assumed = [b.prefix for b in s.inflight]
        candidates = [s.tokens]
        candidates += [b.predicted_end() for b in s.inflight if b.early is not None]
        candidates += [b.predicted_end() for b in s.inflight if b.early is None]
        for prefix in candidates:
            if prefix not in assumed and self.worth_drafting(s, prefix):
                return self.block_after(s, prefix, guess=True)
        return None


class DraftChain(Plain):
    """cloud_led: the cloud decodes by itself and streams CommittedTokens; the edge keeps a
    draft chain from the newest committed prefix it knows, ahead of where it estimates the
    cloud's frontier to be (one round trip of tokens plus `lead_blocks` blocks). It drafts
    one token per unit of work, so a commit that arrives meanwhile (the last one, above all)
    waits at most one draft step, and sends only what the cloud has not seen: each block
    carries the chain's new tokens after the part already sent, naming that part as its
    prefix (the cloud holds it until its own commits reach that prefix, and drops it if they
    contradict it). A lost block only loses what it proposed; on a resend the whole chain
    beyond the known prefix goes out as one block, which also asks for a catch-up if commits
    were lost. Without `drafting` it only listens: cloud-only streaming."""

    def __init__(self, lead_blocks: int, drafting: bool) -> None:
        self.lead_blocks = lead_blocks
        self.drafting = drafting
        self.chain: list[int] = []                     # verified + drafted tokens
        self.chain_rows: dict[int, Optional[tuple]] = {}  # position -> sparse q (sampling)
        self.sent = 0                                  # chain[:sent] is known to the cloud
        self.counted_rounds: set[int] = set()          # final verdicts already counted
        self.token_interval: Optional[float] = None    # seconds per committed token
        self.round_trip: Optional[float] = None        # the shortest block-to-verdict time
        self.last_commit_at: Optional[float] = None

    def next_draft(self, s: EdgeSession) -> Optional[Draft]:
        ahead = self.chain[len(s.tokens):]
        if not self.drafting or len(ahead) >= self.lead(s) \
                or len(self.chain) >= s.params.max_new_tokens - 1 \
                or any(t in s.draft.eos_token_ids for t in ahead):
            return None
        return Draft(list(self.chain), 1)

    def lead(self, s: EdgeSession) -> int:
        """Draft tokens to keep beyond the known prefix: the tokens the cloud commits during
        one round trip (those we have not heard of yet) plus `lead_blocks` blocks; the cloud
        verifies only as many of them as pay."""
        lag = 0
        if self.token_interval and self.round_trip:
            lag = int(self.round_trip / max(self.token_interval, 1e-9))
        lead = lag + self.lead_blocks * max(1, s.params.block_size)
        return min(lead, MAX_BLOCK_TOKENS)             # a resend is the chain as one block

    def drafted(self, s: EdgeSession, draft: Draft, tokens: list[int], rows: list,
                guess: Optional[int]) -> None:
        """Send when a block's worth is unsent, or the chain has reached its lead."""
        start = len(self.chain)
        self.chain += tokens
        for i, row in enumerate(rows):
            self.chain_rows[start + i] = row
        unsent = len(self.chain) - max(self.sent, len(s.tokens))
        if unsent >= max(1, s.params.block_size) or self.next_draft(s) is None:
            self.send_new(s)

    def send_new(self, s: EdgeSession) -> None:
        """The chain's tokens the cloud has not seen, after the prefix it has."""
        start = max(self.sent, len(s.tokens))
        if start < len(self.chain):
            self.send_from(s, start)

    def send_from(self, s: EdgeSession, start: int) -> None:
        """chain[start:] as one block; one from the known prefix supersedes those in flight
        (their verdicts are still counted)."""
        prefix = self.chain[:start]
        rows = [self.chain_rows[i] for i in range(start, len(self.chain))]
        if start == len(s.tokens):
            s.inflight = []
        self.sent = len(self.chain)
        s.send_block(Outstanding(s.message(prefix, self.chain[start:], rows), prefix))

    def on_final(self, s: EdgeSession, v: Verdict, block: Optional[Outstanding]) -> None:
        """The commits themselves arrive as CommittedTokens; a verdict is only counted (once
        per round, whichever copy comes) and times the round trip."""
        if v.round not in self.counted_rounds:
            self.counted_rounds.add(v.round)
            s.tally.judged(v, block.tokens if block is not None else None)
        if block is not None:
            elapsed = s.clock.now() - block.sent_at
            if self.round_trip is None or elapsed < self.round_trip:
                self.round_trip = elapsed

    def on_commit(self, s: EdgeSession, fresh: int) -> None:
        if fresh <= 0:
            return
        now = s.clock.now()
        if self.last_commit_at is not None:
            interval = (now - self.last_commit_at) / fresh
            self.token_interval = interval if self.token_interval is None \
                else 0.8 * self.token_interval + 0.2 * interval
        self.last_commit_at = now

    def prune(self, s: EdgeSession, known: list[int]) -> None:
        if not extends(self.chain, known):
            s.tally.wasted_draft_tokens += max(0, len(self.chain) - len(known))
            self.chain = list(known)
            self.sent = len(known)

    def resend(self, s: EdgeSession) -> None:
        """No progress for resend_after_s: the chain beyond the known prefix goes out again,
        which also asks for a catch-up if commits were lost. Without drafts an empty block
        naming the known prefix asks for the catch-up alone (a lost commit would otherwise
        stall cloud-only streaming until the deadline); it expects no verdict."""
        if s.seq is not None and self.drafting:
            self.send_from(s, len(s.tokens))
        elif not self.drafting:
            s.send(s.message(list(s.tokens), [], []))


def edge_policy(params: DecodingParams, config: EdgeConfig) -> Plain:
    """The policy of the request's mode."""
    mode = params.mode
    if mode == DecodingParams.MODE_PREEMPTIVE:
        return Preemptive()
    if mode == DecodingParams.MODE_PIPELINED:
        return Pipelined(config.pipeline_depth)
    if mode == DecodingParams.MODE_CLOUD_LED:
        return DraftChain(config.lead_blocks, config.drafting)
    return Plain()
