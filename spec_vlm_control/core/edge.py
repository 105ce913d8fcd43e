"""The edge side: one request's drafting state machine.

The edge holds the verified prefix (tokens the target has decided), drafts blocks of k
tokens after it with the draft model, and reacts to what the cloud sends. Modes
(DecodingParams.MODE_*), cheapest in cloud passes first:

- plain: draft a block, send it, wait for its final verdict, repeat.
- early_exit: as plain; early verdicts are only counted (how often they were right).
- preemptive: on an early verdict, draft the next block from the predicted prefix while the
  cloud is still verifying; if the final verdict agrees the block is sent at once (hit),
  otherwise it is thrown away (miss) and the next block drafted from the real prefix.
- pipelined: blocks are sent as soon as they are drafted, each tagged with the prefix it
  assumes; up to `pipeline_depth` are in flight, the first from the verified prefix, each
  next one from the previous block's predicted outcome (its early verdict if one arrived,
  else "all accepted, then the draft's own next token"). Blocks whose assumption turns out
  wrong are dropped here and by the cloud.
- cloud_led: the cloud decodes by itself and streams CommittedTokens; the edge keeps a draft
  chain from the newest committed prefix it knows, ahead of where it estimates the cloud's
  frontier to be (one round trip of tokens plus k), and sends it as one block.

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

from .metrics import EdgeTally, RequestStats
from .models.base import DecoderAdapter, Prompt
from .prefix import CommittedPrefix, prefix_hash
from .protocol import (MAX_BLOCK_TOKENS, Cancel, CommittedTokens, DecodeError, DecodeRequest,
                       DecodingParams, DraftBlock, Verdict)
from .sampling import SLOT_DRAFT, RandomStream, sample, truncate, warp
from .sequence import Sequence

Mode = DecodingParams


@dataclass
class EdgeConfig:
    resend_after_s: float = 1.0
    deadline_s: float = 60.0
    pipeline_depth: int = 6        # pipelined: blocks in flight at most
    draft_top_m: int = 32          # sampling: draft tokens drawn from the top m of q (sent sparse)
    lead_blocks: int = 4           # cloud_led: draft this many blocks beyond the estimated lag
    drafting: bool = True          # cloud_led without drafting = streaming cloud-only decoding


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


def extends(longer: list[int], shorter: list[int]) -> bool:
    return len(longer) >= len(shorter) and longer[: len(shorter)] == shorter


class EdgeSession:
    def __init__(self, draft: DecoderAdapter, prompt: Prompt, request: DecodeRequest, clock,
                 send: Callable = None, config: EdgeConfig = EdgeConfig(),
                 on_tokens: Optional[Callable[[list[int], bool], None]] = None,
                 action_complete: Optional[Callable[[list[int]], bool]] = None):
        self.draft = draft
        self.prompt = prompt
        self.request = request
        self.params = request.params
        self.mode = self.params.mode
        self.clock = clock
        self.send = send
        self.config = config
        self.on_tokens = on_tokens
        self.action_complete = action_complete
        self.stream = RandomStream(self.params.seed, request.request_id)
        self.verified = CommittedPrefix()
        self.seq: Optional[Sequence] = None
        self.inflight: list[Outstanding] = []
        self.held: Optional[Outstanding] = None        # preemptive block waiting for its verdict
        self.chain: list[int] = []                     # cloud_led: verified + drafted tokens
        self.chain_rows: dict[int, Optional[tuple]] = {}  # position -> sparse q (sampling)
        self.round = 0
        self.counted_rounds: set[int] = set()         # cloud_led: verdicts already counted
        self.tally = EdgeTally()
        self.done = False
        self.cancelled = False
        self.error = ""
        self.heard_from_cloud = False
        self.cloud_epoch: Optional[int] = None         # the cloud process serving the session
        self.started = self.last_progress = self.last_advance = 0.0
        self.finished_at: Optional[float] = None
        self.token_interval: Optional[float] = None    # cloud_led: seconds per committed token
        self.round_trip: Optional[float] = None
        self._last_commit_at: Optional[float] = None

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
        for block in self.inflight + ([self.held] if self.held else []):
            self.tally.wasted_draft_tokens += len(block.tokens)
        self.inflight, self.held = [], None
        if cancel:
            self.send(Cancel(self.request.robot_id, self.request.request_id, cancel))

    @property
    def tokens(self) -> list[int]:
        return self.verified.tokens

    def stats(self) -> RequestStats:
        end = self.finished_at if self.finished_at is not None else self.clock.now()
        stats = self.tally.stats(self.started, end, len(self.verified))
        stats.robot_id, stats.request_id = self.request.robot_id, self.request.request_id
        stats.mode, stats.ok, stats.error = self.mode, not self.error, self.error
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
        if self.mode == Mode.MODE_CLOUD_LED and v.stage == Verdict.STAGE_FINAL \
                and v.round not in self.counted_rounds:
            # the commits themselves arrive as CommittedTokens; a verdict is only counted
            self.counted_rounds.add(v.round)
            self.tally.rounds += 1
            self.tally.accepted += v.accepted
        if block is None:
            return                                   # late, duplicated or stale
        if v.stage == Verdict.STAGE_EARLY:
            if block.early is None:
                block.early = (v.accepted, v.next_token)
                self.tally.early_verdicts += 1
            return
        if self.mode != Mode.MODE_CLOUD_LED:
            self.tally.rounds += 1
            self.tally.accepted += v.accepted
            self.tally.accepted_counts[v.accepted] += 1
        if block.early is not None:
            self.tally.early_judged += 1
            self.tally.early_hits += block.early == (v.accepted, v.next_token)
        if self.round_trip is None or self.clock.now() - block.sent_at < self.round_trip:
            self.round_trip = self.clock.now() - block.sent_at
        self.inflight.remove(block)
        self._adopt(block.prefix + block.tokens[: v.accepted] + [v.next_token], v.finished)

    def _on_committed(self, c: CommittedTokens) -> None:
        known = self.tokens
        if c.start > len(known) or known[c.start:] != c.tokens[: len(known) - c.start]:
            return                                   # a gap (lost message) or not ours
        tokens = known[: c.start] + list(c.tokens)
        if prefix_hash(tokens) != c.hash_after:
            return
        now = self.clock.now()
        fresh = len(tokens) - len(known)
        if fresh > 0 and self._last_commit_at is not None:
            interval = (now - self._last_commit_at) / fresh
            self.token_interval = interval if self.token_interval is None \
                else 0.8 * self.token_interval + 0.2 * interval
        if fresh > 0:
            self._last_commit_at = now
        self._adopt(tokens, c.finished)

    def _drop(self, block: Outstanding) -> None:
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
                self._drop(block)
                continue
            if block.speculative and block.prefix == known:
                self.tally.preemptive_hits += 1       # its assumption came true
                block.speculative = False
            keep.append(block)
        self.inflight = keep
        if self.held is not None and not self.inflight and self.held.prefix != known:
            self._drop(self.held)
            self.held = None
        if self.mode == Mode.MODE_CLOUD_LED and not extends(self.chain, known):
            self.tally.wasted_draft_tokens += max(0, len(self.chain) - len(known))
            self.chain = list(known)

    # -- working ----------------------------------------------------------------------------
    def wake_time(self) -> float:
        """When the edge must look at its timers next (resend, deadline)."""
        if self.done:
            return float("inf")
        return min(self.last_progress + self.config.resend_after_s,
                   self.last_advance + self.config.deadline_s)

    def has_work(self) -> bool:
        return not self.done and self._job() is not None

    def work(self) -> None:
        """Handle due timers, then do one unit of drafting (if any)."""
        if self.done:
            return
        now = self.clock.now()
        if now >= self.last_advance + self.config.deadline_s:
            reason = f"deadline: no token verified for {self.config.deadline_s:g} s"
            return self._finish(error=reason, cancel=reason)
        if now >= self.last_progress + self.config.resend_after_s:
            self._resend()
        job = self._job()
        if job is not None:
            t0 = self.clock.now()
            job()
            self.tally.draft_s += self.clock.now() - t0
            self.tally.draft_intervals.append((t0, self.clock.now()))

    def _resend(self) -> None:
        self.last_progress = self.clock.now()
        if not self.heard_from_cloud:
            self.tally.request_resends += 1
            self.send(self.request)
        for block in self.inflight:
            self.tally.resends += 1
            block.sent_at = self.clock.now()
            self.send(block.message)
        if self.mode == Mode.MODE_CLOUD_LED and self.seq is not None and self.config.drafting:
            self._send_chain()                        # asks for a catch-up if commits were lost

    def _job(self) -> Optional[Callable[[], None]]:
        if self.seq is None:
            return self._prefill
        if len(self.tokens) >= self.params.max_new_tokens:
            return None
        if self.mode == Mode.MODE_CLOUD_LED:
            return self._extend_chain if self.config.drafting and self._chain_short() else None
        if self.mode == Mode.MODE_PIPELINED:
            return self._pipeline_job()
        if not self.inflight:
            if self.held is not None and self.held.prefix == self.tokens:
                return self._send_held
            return lambda: self._send(self._draft_block(self.tokens))
        if self.mode == Mode.MODE_PREEMPTIVE and self.held is None:
            prefix = self.inflight[0].predicted_end()
            if self.inflight[0].early is not None and self._worth_drafting(prefix):
                return lambda: self._hold(prefix)
        return None

    def _pipeline_job(self):
        """Draft from the most likely prefix no block assumes yet: the verified one, then
        predictions from early verdicts, then "all accepted" guesses."""
        if len(self.inflight) >= self.config.pipeline_depth:
            return None
        assumed = [b.prefix for b in self.inflight]
        candidates = [self.tokens]
        candidates += [b.predicted_end() for b in self.inflight if b.early is not None]
        candidates += [b.predicted_end() for b in self.inflight if b.early is None]
        for prefix in candidates:
            if prefix in assumed or not self._worth_drafting(prefix):
                continue
            return lambda: self._send(self._draft_block(prefix, guess=True))
        return None

    def _worth_drafting(self, prefix: Optional[list[int]]) -> bool:
        return prefix is not None and len(prefix) < self.params.max_new_tokens \
            and not any(t in self.draft.eos_token_ids for t in prefix[len(self.tokens):])

    def _prefill(self) -> None:
        self.seq = Sequence(self.draft, self.prompt)

    def _hold(self, prefix: list[int]) -> None:
        self.held = self._draft_block(prefix)

    def _send_held(self) -> None:
        self.tally.preemptive_hits += 1
        held, self.held = self.held, None
        held.speculative = False
        self._send(held)

    def _send(self, block: Outstanding) -> None:
        block.sent_at = self.clock.now()
        self.inflight.append(block)
        self.tally.blocks_sent += 1
        self.send(block.message)

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

    def _message(self, prefix: list[int], tokens: list[int], rows: list) -> DraftBlock:
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

    def _draft_block(self, prefix: list[int], guess: bool = False) -> Outstanding:
        """Draft k tokens after `prefix` (fewer near max_new_tokens; the verdict adds one)."""
        k = max(0, min(self.params.block_size, self.params.max_new_tokens - len(prefix) - 1))
        tokens, rows = self._draft(prefix, k)
        bonus = self._draft(prefix + tokens, 1)[0][0] if guess else None
        return Outstanding(self._message(prefix, tokens, rows), list(prefix), guess=bonus,
                           speculative=prefix != self.tokens)

    # -- cloud-led --------------------------------------------------------------------------
    def _lead(self) -> int:
        """Draft tokens to keep beyond the known prefix: the tokens the cloud commits during
        one round trip (those we have not heard of yet) plus `lead_blocks` blocks; the cloud
        verifies only as many of them as pay."""
        lag = 0
        if self.token_interval and self.round_trip:
            lag = int(self.round_trip / max(self.token_interval, 1e-9))
        lead = lag + self.config.lead_blocks * max(1, self.params.block_size)
        return min(lead, MAX_BLOCK_TOKENS)             # the chain is sent as one block

    def _chain_short(self) -> bool:
        ahead = len(self.chain) - len(self.tokens)
        return ahead < self._lead() and len(self.chain) < self.params.max_new_tokens - 1

    def _extend_chain(self) -> None:
        if not extends(self.chain, self.tokens):
            self.chain = list(self.tokens)
        k = min(max(1, self.params.block_size), self.params.max_new_tokens - 1 - len(self.chain),
                MAX_BLOCK_TOKENS - (len(self.chain) - len(self.tokens)))
        start = len(self.chain)
        tokens, rows = self._draft(self.chain, k)
        self.chain += tokens
        for i, row in enumerate(rows):
            self.chain_rows[start + i] = row
        self._send_chain()

    def _send_chain(self) -> None:
        known = self.tokens
        if not extends(self.chain, known):
            self.chain = list(known)
        rows = [self.chain_rows[i] for i in range(len(known), len(self.chain))]
        message = self._message(known, self.chain[len(known):], rows)
        block = Outstanding(message, list(known), sent_at=self.clock.now())
        self.inflight = [b for b in self.inflight if b.prefix == known][-2:] + [block]
        self.tally.blocks_sent += 1
        self.send(message)
