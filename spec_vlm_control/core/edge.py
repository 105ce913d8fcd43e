"""The edge side: one request's drafting state machine.

The edge holds the verified prefix (tokens the target has decided), drafts blocks of k
tokens after it with the draft model, and reacts to what the cloud sends. What to draft and
what to send is the request's mode (core/edge_modes.py, one policy each): plain, early_exit,
preemptive and pipelined lead from the edge; in cloud_led the cloud decodes by itself and
the edge keeps a draft chain ahead of it. The session runs the draft passes and owns the
rest: the verified prefix, the blocks in flight, resends, the deadline, the cloud's epoch.

Choosing a mode. The edge-led modes are cost-first: the cloud runs one pass per block, so
target passes per token fall to 1/(accepted+1), which matters when one GPU serves many
robots; but every round waits for the link, so with a poor draft they are slower than the
cloud streaming its own tokens (per round: RTT + k draft steps + a pass, for one token).
Pipelining hides the round trip while drafts agree. cloud_led is latency-first: the cloud
never waits, so time per token stays at streaming's (within its admission overhead) with a
useless draft and drops below it when drafts land ahead, at about one pass per token when
the draft is poor. `spec-vlm bench` measures both sides of this trade-off.

Draft tokens never leave this module except inside DraftBlocks: only verified tokens reach
`on_tokens`. Messages that match no outstanding block or disagree with the verified prefix
are ignored, outstanding blocks are resent after `resend_after_s` and the request fails
(with a Cancel) when no token has been verified for `deadline_s`, so a lossy link delays a
request but never corrupts or hangs it, and a long answer on a live link is never cut off.

The edge learns the epoch of the cloud process serving its session from the first verdict or
commit it hears, and then hears no other process. UNKNOWN_SESSION from that process (or
before any is known) answers a block that overtook its request: ignored, resends cover it.
From another process (the cloud restarted), and SESSION_GONE from any, the session is lost
for good: the request fails at once. Messages with fields out of range are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .edge_modes import Draft, Outstanding, edge_policy, extends
from .metrics import EdgeTally, RequestStats
from .models.base import DecoderAdapter, Prompt
from .prefix import CommittedPrefix, prefix_hash
from .protocol import (Cancel, CommittedTokens, DecodeError, DecodeRequest, DraftBlock,
                       Verdict)
from .sampling import SLOT_DRAFT, RandomStream, sample, truncate, warp
from .sequence import Sequence


@dataclass
class EdgeConfig:
    """Defaults are the edge node's (config/edge.yaml)."""

    resend_after_s: float = 1.0
    deadline_s: float = 10.0
    pipeline_depth: int = 3        # pipelined: blocks in flight at most
    draft_top_m: int = 32          # sampling: draft tokens drawn from the top m of q (sent sparse)
    lead_blocks: int = 4           # cloud_led: draft this many blocks beyond the estimated lag
    drafting: bool = True          # cloud_led without drafting = streaming cloud-only decoding


class EdgeSession:
    def __init__(self, draft: DecoderAdapter, prompt: Prompt, request: DecodeRequest, clock,
                 send: Callable = None, config: EdgeConfig = EdgeConfig(),
                 on_tokens: Optional[Callable[[list[int], bool], None]] = None,
                 action_complete: Optional[Callable[[list[int]], bool]] = None):
        self.draft = draft
        self.prompt = prompt
        self.request = request
        self.params = request.params
        self.policy = edge_policy(self.params, config)   # the mode, chosen once
        self.clock = clock
        self.send = send
        self.config = config
        self.on_tokens = on_tokens
        self.action_complete = action_complete
        self.stream = RandomStream(self.params.seed, request.request_id)
        self.verified = CommittedPrefix()
        self.seq: Optional[Sequence] = None
        self.inflight: list[Outstanding] = []
        self.round = 0
        self.tally = EdgeTally()
        self.done = False
        self.cancelled = False
        self.error = ""
        self.heard_from_cloud = False
        self.cloud_epoch: Optional[int] = None         # the cloud process serving the session
        self.started = self.last_progress = self.last_advance = 0.0
        self.finished_at: Optional[float] = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.started = self.last_progress = self.last_advance = self.clock.now()
        self.send(self.request)

    def cancel(self, reason: str) -> None:
        """Abandon the request by the edge's own choice (a newer decision, shutdown): not a
        link failure. Call it from the thread that drives the session (or once it stopped)."""
        self.cancelled = True
        self.abort(reason)

    def abort(self, error: str) -> None:
        """End the request as failed and tell the cloud to free its session."""
        self._finish(error=error, cancel=error)

    def _finish(self, error: str = "", cancel: str = "") -> None:
        if self.done:
            return
        self.done = True
        self.error = error
        self.finished_at = self.clock.now()
        for block in self.inflight:
            self.tally.wasted_draft_tokens += len(block.tokens)
        self.inflight = []
        self.policy.finish(self)
        if cancel:
            self.send(Cancel(self.request.robot_id, self.request.request_id, cancel))

    @property
    def tokens(self) -> list[int]:
        return self.verified.tokens

    def stats(self) -> RequestStats:
        end = self.finished_at if self.finished_at is not None else self.clock.now()
        stats = self.tally.stats(self.started, end, len(self.verified))
        stats.robot_id, stats.request_id = self.request.robot_id, self.request.request_id
        stats.mode, stats.ok, stats.error = self.params.mode, not self.error, self.error
        return stats

    # -- receiving --------------------------------------------------------------------------
    def receive(self, message) -> None:
        if self.done or getattr(message, "request_id", None) != self.request.request_id \
                or getattr(message, "robot_id", self.request.robot_id) != self.request.robot_id:
            return
        if isinstance(message, DecodeError):
            serving = self.cloud_epoch is None or message.cloud_epoch == self.cloud_epoch
            if message.code == DecodeError.CODE_UNKNOWN_SESSION and serving:
                return                      # the block overtook the request; resend covers it
            return self._finish(f"cloud error {message.code}: {message.reason}")
        if not self._plausible(message):
            return
        if self.cloud_epoch is None:
            self.cloud_epoch = message.cloud_epoch
        elif message.cloud_epoch != self.cloud_epoch:
            return                          # not the process serving this session
        self.heard_from_cloud = True
        if isinstance(message, Verdict):
            self._on_verdict(message)
        elif isinstance(message, CommittedTokens):
            self._on_committed(message)

    def _plausible(self, message) -> bool:
        """A verdict or commit whose fields are within range (vocabulary, block length)."""
        vocab = self.draft.vocab_size
        if isinstance(message, Verdict):
            return message.stage in (Verdict.STAGE_EARLY, Verdict.STAGE_FINAL) \
                and 0 <= message.accepted <= message.block_length \
                and 0 <= message.next_token < vocab
        if isinstance(message, CommittedTokens):
            return message.start >= 0 and all(0 <= t < vocab for t in message.tokens)
        return False

    def _find(self, v: Verdict) -> Optional[Outstanding]:
        for block in self.inflight:
            m = block.message
            if (m.assumed_length, m.assumed_hash, m.round, len(m.tokens)) == \
                    (v.assumed_length, v.assumed_hash, v.round, v.block_length):
                return block
        return None

    def _on_verdict(self, v: Verdict) -> None:
        block = self._find(v)
        if v.stage == Verdict.STAGE_FINAL:
            self.policy.on_final(self, v, block)
        if block is None:
            return                                   # late, duplicated or stale
        if v.stage == Verdict.STAGE_EARLY:
            if block.early is None:
                block.early = (v.accepted, v.next_token)
                self.tally.early_verdicts += 1
            return
        if block.early is not None:
            self.tally.early_judged += 1
            self.tally.early_hits += block.early == (v.accepted, v.next_token)
        self.inflight.remove(block)
        self._adopt(block.prefix + block.tokens[: v.accepted] + [v.next_token], v.finished)

    def _on_committed(self, c: CommittedTokens) -> None:
        known = self.tokens
        if c.start > len(known) or known[c.start:] != c.tokens[: len(known) - c.start]:
            return                                   # a gap (lost message) or not ours
        tokens = known[: c.start] + list(c.tokens)
        if prefix_hash(tokens) != c.hash_after:
            return
        self.policy.on_commit(self, len(tokens) - len(known))
        self._adopt(tokens, c.finished)

    def drop(self, block: Outstanding) -> None:
        self.tally.wasted_draft_tokens += len(block.tokens)
        self.tally.preemptive_misses += block.speculative

    def _adopt(self, tokens: list[int], finished: bool) -> None:
        """A longer verified prefix: stream the new tokens, drop what it contradicts."""
        known = self.tokens
        if extends(tokens, known) and len(tokens) > len(known):
            fresh = tokens[len(known):]
            self.verified.append(fresh)
            self.last_progress = self.last_advance = self.clock.now()
            self.tally.verified(len(fresh), self.last_progress)
            done = finished or len(self.verified) >= self.params.max_new_tokens \
                or any(t in self.draft.eos_token_ids for t in fresh)
            if self.on_tokens is not None:
                self.on_tokens(fresh, done)
            if done:
                return self._finish()
            if self.action_complete is not None and self.action_complete(self.tokens):
                return self._finish(cancel="action complete")
        elif finished and tokens == known:
            return self._finish()
        self._prune()

    def _prune(self) -> None:
        known = self.tokens
        keep = []
        for block in self.inflight:
            if not extends(block.prefix, known):
                self.drop(block)
                continue
            if block.speculative and block.prefix == known:
                self.tally.preemptive_hits += 1       # its assumption came true
                block.speculative = False
            keep.append(block)
        self.inflight = keep
        self.policy.prune(self, known)

    # -- working ----------------------------------------------------------------------------
    def wake_time(self) -> float:
        """When the edge must look at its timers next (resend, deadline)."""
        if self.done:
            return float("inf")
        return min(self.last_progress + self.config.resend_after_s,
                   self.last_advance + self.config.deadline_s)

    def has_work(self) -> bool:
        return not self.done and (self.seq is None or self._next_draft() is not None)

    def work(self) -> None:
        """Handle due timers, then do one unit of drafting (if any): the prompt's prefill or
        what the mode asks for."""
        if self.done:
            return
        now = self.clock.now()
        if now >= self.last_advance + self.config.deadline_s:
            reason = f"deadline: no token verified for {self.config.deadline_s:g} s"
            return self._finish(error=reason, cancel=reason)
        if now >= self.last_progress + self.config.resend_after_s:
            self._resend()
        if self.seq is None:
            job = self._prefill
        elif (draft := self._next_draft()) is not None:
            job = lambda: self._run(draft)
        else:
            return
        t0 = self.clock.now()
        job()
        self.tally.draft_s += self.clock.now() - t0
        self.tally.draft_intervals.append((t0, self.clock.now()))

    def _next_draft(self) -> Optional[Draft]:
        if len(self.tokens) >= self.params.max_new_tokens:
            return None
        return self.policy.next_draft(self)

    def _prefill(self) -> None:
        self.seq = Sequence(self.draft, self.prompt)

    def _run(self, draft: Draft) -> None:
        """Feed the draft model what the policy asked for and hand it the result."""
        tokens, rows = self._draft(draft.prefix, draft.count)
        guess = self._draft(draft.prefix + tokens, 1)[0][0] if draft.guess else None
        self.policy.drafted(self, draft, tokens, rows, guess)

    def _resend(self) -> None:
        self.last_progress = self.clock.now()
        if not self.heard_from_cloud:
            self.tally.request_resends += 1
            self.send(self.request)
        for block in self.inflight:
            self.tally.resends += 1
            block.sent_at = self.clock.now()
            self.send(block.message)
        self.policy.resend(self)

    # -- drafting and sending (run for the policy) -------------------------------------------
    def _choose(self, logits, position: int) -> tuple[int, Optional[tuple]]:
        """The draft's token at `position` and, when sampling, its sparse q row."""
        if self.params.greedy:
            return int(logits.argmax()), None
        q = warp(logits[None], self.params.temperature, self.params.top_p)[0]
        ids, probs = truncate(q, self.config.draft_top_m)
        token = int(ids[sample(probs, self.stream.uniform(position, SLOT_DRAFT))])
        return token, (ids.tolist(), probs.tolist())

    def _draft(self, prefix: list[int], count: int) -> tuple[list[int], list]:
        """Up to `count` draft tokens; an end-of-sequence token ends the block, since nothing
        after it could ever be committed."""
        context = list(prefix)
        rows = []
        for _ in range(count):
            token, row = self._choose(self.seq.predict_after(context), len(context))
            context.append(token)
            rows.append(row)
            self.seq.settle(context)
            if token in self.draft.eos_token_ids:
                break
        return context[len(prefix):], rows

    def message(self, prefix: list[int], tokens: list[int], rows: list) -> DraftBlock:
        """The DraftBlock of `tokens` after `prefix`, with their sparse q rows (sampling)."""
        self.round += 1
        self.tally.drafted_tokens += len(tokens)
        sizes, ids, probs = [], [], []
        for row in rows:
            if row is not None:
                sizes.append(len(row[0]))
                ids.extend(row[0])
                probs.extend(row[1])
        return DraftBlock(self.request.robot_id, self.request.request_id, self.round,
                          len(prefix), prefix_hash(prefix), list(tokens), sizes, ids, probs)

    def new_block(self, prefix: list[int], tokens: list[int], rows: list,
                  guess: Optional[int] = None) -> Outstanding:
        return Outstanding(self.message(prefix, tokens, rows), list(prefix), guess=guess,
                           speculative=prefix != self.tokens)

    def send_block(self, block: Outstanding) -> None:
        block.sent_at = self.clock.now()
        self.inflight.append(block)
        self.tally.blocks_sent += 1
        self.send(block.message)
