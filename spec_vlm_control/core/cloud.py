"""The cloud side: one target serving many edge sessions.

Each session (robot_id, request_id) holds its own target cache and committed prefix. A draft
block is verified only when the prefix it assumes is the committed one; a block naming an
older committed prefix is answered from memory (its final verdict again if it is a
duplicate, else a catch-up CommittedTokens, which is also how a lost verdict is recovered);
a block naming a prefix never committed is stale and dropped; a block naming a longer prefix
waits (pipelined blocks may overtake their predecessors).

What a session verifies next is its mode's (core/cloud_modes.py): edge-led sessions verify
the block naming the committed prefix; cloud-led sessions never wait for the edge: with
nothing worth verifying queued, the cloud decodes one token itself, commits it and streams
it. The verifier is the scheduler: each unit of work gathers what every session's policy asks
for and runs it as one batched target pass (core/target_pass.py), then commits and answers
each session's outcome. A prompt enters its session's cache a chunk per pass, in the same
pass as the others' blocks and steps, chunks sized so that padding stays within
max_prefill_padding (core/batch.py `prefill_width`), so a new robot's image prefill neither
stalls the others' verification nor waits for a pass of its own (`_choose`). One session per
pass (max_batch_sessions = 1) is the same code. A pass that raises (not a process fault) is
re-run one session at a time and only the session that raises fails (INTERNAL).

Session lifecycle. A session opens on its request (if the robot stays within its share of
sessions and its request rate), runs until its last token (completed: late blocks are still
answered from the committed prefix) or ends early (cancelled, overloaded, refused: "gone",
late blocks get SESSION_GONE, never a catch-up that would read as finished). Sessions idle
for session_ttl_s expire, also with no message arriving (the worker wakes for it), and a
dropped session leaves a bounded tombstone so its blocks get SESSION_GONE too; only a session
this process never saw is UNKNOWN_SESSION. Every answer carries this process's epoch, so the
edge can tell the answer to a block that overtook its request from a restarted cloud. The
cache bound holds as caches grow: the session whose pass would cross max_cached_tokens ends
OVERLOADED; no other session is touched. An ended session keeps no image or instruction.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Optional

from .admission import Admission
from .cloud_modes import Pass, cloud_policy
from .models.base import DecoderAdapter, Prompt
from .prefix import CommittedPrefix
from .protocol import (MAX_BLOCK_TOKENS, PROTOCOL_VERSION, Cancel, CommittedTokens,
                       DecodeError, DecodeRequest, DecodingParams, DraftBlock, Verdict,
                       new_epoch, session_key)
from .sampling import RandomStream, dense
from .sequence import Sequence
from .verdict import Judgement, VerdictRule
from .validation import (BadMessage, addressable, check_message, fault_reason,
                         is_process_fault)
from .batch import PassLog, prefill_width
from .target_pass import Row, TargetPass


@dataclass
class CloudConfig:
    """Defaults are the cloud node's (config/cloud.yaml)."""

    max_sessions: int = 8            # active sessions (each holds a KV cache)
    max_cached_tokens: int = 1 << 16  # summed over active sessions
    session_ttl_s: float = 60.0      # a session with no message for this long is dropped
    max_queued_blocks: int = 16      # per session
    max_finished: int = 256          # finished sessions remembered to answer late messages
    max_tombstones: int = 4096       # dropped sessions remembered to answer SESSION_GONE
    max_sessions_per_robot: int = 2  # active sessions of one robot_id
    max_requests_per_s: float = 10.0  # new requests of one robot_id, on average...
    request_burst: int = 20          # ...and at once (token bucket)
    # what one message may ask for (core/validation.py); beyond it: BAD_REQUEST
    max_block_tokens: int = MAX_BLOCK_TOKENS  # draft tokens in one block (and block_size)
    max_new_tokens: int = 1024       # DecodingParams.max_new_tokens
    max_instruction_chars: int = 2000
    max_image_bytes: int = 4 << 20
    max_image_pixels: int = 8 << 20  # as the image header declares them
    max_prompt_tokens: int = 4096    # instruction + image tokens, after the chat template
    tokenizer_hash: str = ""
    target_model_hash: str = ""
    # per-pass scheduling (`CloudVerifier._choose`)
    max_batch_sessions: int = 8      # sessions in one target pass (1 = one session per pass)
    pass_token_budget: int = 256     # positions one pass computes (rows x longest row); a
                                     # prompt prefill feeds at most this many per pass
    max_wait_ms: float = 50.0        # work ready this long goes first; prefills yield to
                                     # other work until then
    max_prefill_padding: float = 0.25  # a prompt chunk beside other rows is at most as wide
                                       # as keeps this share of the pass's positions padding,
                                       # until it has waited max_wait_ms (docs/fleet.md)


class RequestRate:
    """Token bucket per robot_id: at most `burst` new requests at once, refilled at `rate`
    per second. A full bucket is the same as none, so full ones are forgotten: the table
    holds only robots that asked recently."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, max(1, burst)
        self.buckets: dict[str, tuple[float, float]] = {}   # robot_id -> (tokens, at)
        self._prune_at = 64

    def admit(self, robot_id: str, now: float) -> bool:
        tokens, at = self.buckets.get(robot_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        admitted = tokens >= 1
        self.buckets[robot_id] = (tokens - admitted, now)
        if len(self.buckets) > self._prune_at:
            self.buckets = {r: (t, a) for r, (t, a) in self.buckets.items()
                            if t + (now - a) * self.rate < self.burst}
            self._prune_at = max(64, 2 * len(self.buckets))
        return admitted


class CloudSession:
    def __init__(self, request: DecodeRequest, target_pass: TargetPass, now: float,
                 rule=VerdictRule, admission: Optional[Admission] = None):
        self.request = request
        self.key = session_key(request)
        self.params: DecodingParams = request.params
        self.policy = cloud_policy(request, admission or Admission())   # the mode, chosen once
        self.rule = rule(self.params, RandomStream(self.params.seed, request.request_id))
        self.seq: Optional[Sequence] = None            # set by prefill, freed when finished
        self.committed = CommittedPrefix()
        self.blocks: list[DraftBlock] = []
        self.next_block: Optional[tuple[DraftBlock, int]] = None   # set by triage
        self.verdicts: dict[tuple, Verdict] = {}       # (length, hash, tokens) -> final verdict
        self.candidates = target_pass.new_candidates()
        self.finished = False
        self.gone = ""        # why it ended before its last token; "" = running or completed
        self.last_active = now
        self.waiting_since: Optional[float] = None   # since when it has work ready
        self.counts = dict(passes=0, blocks_verified=0, stale=0, duplicates=0, catchups=0,
                           busy_s=0.0)
        self.busy: list[tuple[float, float]] = []     # (start, end) of its target passes

    @property
    def room(self) -> int:
        return self.params.max_new_tokens - len(self.committed)


class CloudVerifier:
    def __init__(self, target: DecoderAdapter, prompt_for: Callable[[DecodeRequest], Prompt],
                 clock, send: Callable = None, config: CloudConfig = CloudConfig(),
                 target_pass: Optional[TargetPass] = None, rule=VerdictRule):
        self.target = target
        self.rule = rule
        self.prompt_for = prompt_for
        self.clock = clock
        self.send = send
        self.config = config
        self.target_pass = target_pass or TargetPass(target)
        self.log = PassLog()        # batch sizes, queue waits, busy time (diagnostics)
        self.sessions: dict[tuple[str, int], CloudSession] = {}
        self.admission = Admission()   # pass costs and robots' acceptance, across sessions
        self.tombstones: OrderedDict[tuple[str, int], str] = OrderedDict()   # key -> why gone
        self.rate = RequestRate(config.max_requests_per_s, config.request_burst)
        self.epoch = new_epoch()
        self.unknown = 0
        self.refused = 0        # messages and requests answered BAD_REQUEST
        self.unaddressed = 0    # messages naming no robot or request to answer (dropped)

    # -- messages ---------------------------------------------------------------------------
    def receive(self, message) -> None:
        self._receive(message)
        self._stamp(self.clock.now())

    def _receive(self, message) -> None:
        self.expire()
        if self._refused(message):
            return
        if isinstance(message, DecodeRequest):
            return self._open(message)
        key = session_key(message)
        session = self.sessions.get(key)
        if session is None:
            if isinstance(message, DraftBlock) and key in self.tombstones:
                self._error(message, DecodeError.CODE_SESSION_GONE,
                            f"session {self.tombstones[key]}")
            elif isinstance(message, DraftBlock):
                self.unknown += 1
                self._error(message, DecodeError.CODE_UNKNOWN_SESSION, "no such session")
            return
        session.last_active = self.clock.now()
        if isinstance(message, Cancel):
            self._finish(session, "cancelled")
        elif isinstance(message, DraftBlock) and session.gone:
            self._error(message, DecodeError.CODE_SESSION_GONE, f"session {session.gone}")
        elif isinstance(message, DraftBlock):
            session.blocks.append(message)
            self._triage(session)

    def _refused(self, message) -> bool:
        """Validate before anything is queued: a message the cloud cannot serve is answered
        BAD_REQUEST at once, and a refused block ends its session (its edge gives up on the
        error anyway)."""
        if not addressable(message):
            self.unaddressed += 1
            return True
        session = self.sessions.get(session_key(message))
        try:
            check_message(message, self.config, self.target.vocab_size,
                          session.params if session is not None else None)
        except BadMessage as exc:
            self.refused += 1
            self._error(message, DecodeError.CODE_BAD_REQUEST, str(exc))
            if session is not None and isinstance(message, DraftBlock):
                self._finish(session, "refused")
            return True
        return False

    def _error(self, message, code: int, reason: str) -> None:
        self.send(DecodeError(message.robot_id, message.request_id, code, reason, self.epoch))

    def _open(self, request: DecodeRequest) -> None:
        key = session_key(request)
        known = self.sessions.get(key)
        if known is not None:                           # a duplicate request
            known.last_active = self.clock.now()
            if known.gone:
                self._error(request, DecodeError.CODE_SESSION_GONE, f"session {known.gone}")
            return
        if key in self.tombstones:
            return self._error(request, DecodeError.CODE_SESSION_GONE,
                               f"session {self.tombstones[key]}")
        shake, cfg = request.handshake, self.config
        if shake.protocol_version != PROTOCOL_VERSION:
            return self._error(request, DecodeError.CODE_HANDSHAKE,
                               f"protocol {shake.protocol_version} != {PROTOCOL_VERSION}")
        if shake.tokenizer_hash != cfg.tokenizer_hash:
            return self._error(request, DecodeError.CODE_HANDSHAKE,
                               "tokenizer mismatch: the draft and target vocabularies differ")
        if shake.target_model_hash and shake.target_model_hash != cfg.target_model_hash:
            return self._error(request, DecodeError.CODE_HANDSHAKE,
                               f"edge expects target {shake.target_model_hash}")
        if not self.rate.admit(request.robot_id, self.clock.now()):
            return self._error(request, DecodeError.CODE_RATE_LIMITED,
                               f"robot {request.robot_id!r} exceeds "
                               f"{cfg.max_requests_per_s:g} requests/s")
        active = [s for s in self.sessions.values() if not s.finished]
        mine = sum(s.key[0] == request.robot_id for s in active)
        if mine >= cfg.max_sessions_per_robot:
            return self._error(request, DecodeError.CODE_OVERLOADED,
                               f"robot {request.robot_id!r} has {mine} active sessions")
        cached = self.cached_tokens()
        if len(active) >= cfg.max_sessions or cached >= cfg.max_cached_tokens:
            return self._error(request, DecodeError.CODE_OVERLOADED,
                               f"{len(active)} sessions, {cached} cached tokens")
        self.sessions[key] = CloudSession(request, self.target_pass, self.clock.now(), self.rule,
                                          self.admission)

    def cached_tokens(self) -> int:
        return sum(s.seq.footprint for s in self.sessions.values() if s.seq is not None)

    def expire(self) -> None:
        """Drop sessions idle for session_ttl_s (telling a running one's edge) and finished
        ones beyond max_finished, each leaving a tombstone."""
        now = self.clock.now()
        for key, s in list(self.sessions.items()):
            if now - s.last_active > self.config.session_ttl_s:
                if not s.finished:
                    self._error(s.request, DecodeError.CODE_SESSION_GONE, "session expired")
                self._forget(key, s.gone or "expired")
        finished = [k for k, s in self.sessions.items() if s.finished]
        for key in finished[: max(0, len(finished) - self.config.max_finished)]:
            self._forget(key, self.sessions[key].gone or "evicted")

    def _forget(self, key: tuple[str, int], why: str) -> None:
        del self.sessions[key]
        self.tombstones[key] = why
        self.tombstones.move_to_end(key)
        while len(self.tombstones) > self.config.max_tombstones:
            self.tombstones.popitem(last=False)

    def wake_time(self) -> float:
        """When the next idle session expires: the worker wakes for it."""
        if not self.sessions:
            return math.inf
        return min(s.last_active for s in self.sessions.values()) + self.config.session_ttl_s

    # -- block triage -----------------------------------------------------------------------
    def _triage(self, s: CloudSession) -> None:
        """Answer or drop what can be answered at once; keep in `next_block` the block to
        verify next and how many of its tokens the committed prefix already covers."""
        keep: list[DraftBlock] = []
        best = None
        length = len(s.committed)
        for block in s.blocks:
            a, h = block.assumed_length, block.assumed_hash
            if a > length and not s.finished:
                keep.append(block)                      # assumes a prefix not reached yet
                continue
            if not s.committed.names(a, h):
                s.counts["stale"] += 1
                continue
            verdict = s.verdicts.get((a, h, tuple(block.tokens)))
            if verdict is not None:
                s.counts["duplicates"] += 1
                self.send(replace(verdict, round=block.round))   # answer the copy asking
                continue
            covered = length - a
            if not s.finished and s.policy.verifiable(s, block, covered):
                keep.append(block)
                best = (block, covered)
                continue
            s.counts["catchups"] += 1
            self.send(CommittedTokens(block.robot_id, block.request_id, a,
                                      s.committed.tokens[a:], s.committed.hash(), s.finished,
                                      self.epoch))
        s.blocks = keep[-self.config.max_queued_blocks:]
        s.next_block = best if best is not None and best[0] in s.blocks else None
        s.policy.queued(s.blocks)

    # -- work -------------------------------------------------------------------------------
    def has_work(self) -> bool:
        return any(self._ready(s) for s in self.sessions.values())

    def _ready(self, s: CloudSession) -> bool:
        """Whether s needs a pass: its prefill, or what its mode asks for."""
        return not s.finished and (self._prefilling(s) or s.policy.next_pass(s) is not None)

    @staticmethod
    def _prefilling(s: CloudSession) -> bool:
        return s.seq is None or s.seq.unfed > 0

    def _stamp(self, now: float) -> None:
        """Keep each session's `waiting_since`: when its ready work became ready."""
        for s in self.sessions.values():
            if not self._ready(s):
                s.waiting_since = None
            elif s.waiting_since is None:
                s.waiting_since = now

    def work(self) -> None:
        """Expire idle sessions, then one target pass over the work `_choose` picks."""
        self.expire()
        start = self.clock.now()
        chosen, chunk = self._choose(start)
        if chosen:
            waits = [start - s.waiting_since for s, _ in chosen]
            fed = [len(p.tokens) + 1 if p else min(chunk, s.seq.unfed) for s, p in chosen]
            self._run(chosen, chunk)
            end = self.clock.now()
            self.log.record(start, end, waits, fed, sum(p is None for _, p in chosen))
            for (s, p), wait in zip(chosen, waits):
                if p is not None:        # the longest a decoding session waited for a pass
                    s.counts["max_wait_s"] = max(s.counts.get("max_wait_s", 0.0), wait)
                s.counts["busy_s"] += end - start
                s.busy.append((start, end))
                if p is not None:        # a prompt's wait runs until all of it is in
                    s.waiting_since = None
        self._stamp(self.clock.now())

    def _choose(self, now: float) -> tuple[list[tuple[CloudSession, Optional[Pass]]], int]:
        """The work of the next pass and the positions each prompt row feeds in it.
        Oldest-waiting first: work ready for max_wait_ms or longer, then the other sessions'
        passes, then prefills (a new robot's prompt waits for the others' verification at
        most max_wait_ms). Up to max_batch_sessions rows whose rows x longest row stay
        within pass_token_budget join the oldest (which runs even beyond the budget); a
        prefilling session's row (Pass None) is a chunk of its prompt, as wide as
        `prefill_width` allows within max_prefill_padding, or within the budget alone once
        the prompt has waited max_wait_ms (a prompt's wait runs until all of it is in, so a
        new robot's prefill takes at most about max_wait_ms longer than alone). A session's
        wait restarts after each of its passes, so every ready session is served in turn."""
        cfg = self.config
        due = now - cfg.max_wait_ms / 1000.0
        ready = [s for s in self.sessions.values() if self._ready(s)]
        for s in ready:
            if s.waiting_since is None:
                s.waiting_since = now
        ready.sort(key=lambda s: (0 if s.waiting_since <= due else 1 + self._prefilling(s),
                                  s.waiting_since))
        chosen: list[tuple[CloudSession, Optional[Pass]]] = []
        width = fed = 0
        for s in ready:
            if len(chosen) == cfg.max_batch_sessions:
                break
            if self._prefilling(s):
                if chosen and max(width, 1) * (len(chosen) + 1) > cfg.pass_token_budget:
                    continue
                if (s.seq is not None or self._begin(s)) and s.seq.unfed:
                    chosen.append((s, None))
                continue
            p = s.policy.next_pass(s, fed + 1)
            wider = max(width, len(p.tokens) + 1)
            if chosen and wider * (len(chosen) + 1) > cfg.pass_token_budget:
                continue
            chosen.append((s, p))
            width, fed = wider, fed + len(p.tokens) + 1
        prompts = [s.seq.unfed for s, p in chosen if p is None]
        if not prompts:
            return chosen, 0
        late = any(p is None and s.waiting_since <= due for s, p in chosen)
        return chosen, prefill_width([len(p.tokens) + 1 for _, p in chosen if p is not None],
                                     prompts, cfg.pass_token_budget,
                                     1.0 if late else cfg.max_prefill_padding)

    def _begin(self, s: CloudSession) -> bool:
        """Build s's prompt (the image through the vision tower, once) and open its
        sequence, the prompt to be fed a chunk per pass; whether s still runs. Whatever the
        request's content makes fail here (an undecodable image, the template, a prompt
        beyond max_prompt_tokens) ends that request with BAD_REQUEST; a process fault (out
        of memory, CUDA) propagates."""
        try:
            prompt = self.prompt_for(s.request)
            length = int(prompt.input_ids.shape[1])
            if length > self.config.max_prompt_tokens:
                raise BadMessage(f"prompt of {length} tokens > max_prompt_tokens "
                                 f"{self.config.max_prompt_tokens}")
            if not self._fits(s, length):
                return False
            s.seq = Sequence(self.target, prompt, chunked=True)
            return True
        except Exception as exc:
            if is_process_fault(exc):
                raise
            self.refused += 1
            self._error(s.request, DecodeError.CODE_BAD_REQUEST, fault_reason(exc))
            self._finish(s, "refused")
            return False

    def _run(self, chosen: list[tuple[CloudSession, Optional[Pass]]], chunk: int) -> None:
        """One batched target pass: each session's pass tokens after its committed prefix
        and each prefilling session's next `chunk` prompt positions (its cache was reserved
        when it began), then per session commit the final verdict and answer it (a block's
        early verdicts go out during the pass, as soon as its exit layer is done)."""
        runs = []
        growth = positions = 0
        for s, p in chosen:
            if p is None:
                runs.append((s, p, chunk))
                positions += min(chunk, s.seq.unfed)
                continue
            if not self._fits(s, len(p.tokens) + 1, growth):
                continue
            growth += len(p.tokens) + 1
            if p.block is not None:
                s.blocks.remove(p.block)
            runs.append((s, p, Row(s.seq, p.tokens, s.rule, len(s.committed),
                                   self._draft_probs(s, p), self._early_sender(s, p),
                                   s.candidates if p.block is not None else None, s.room)))
        if not runs:
            return
        t0 = self.clock.now()
        finals = self._pass(runs)
        seconds = self.clock.now() - t0
        self.admission.costs.record(growth + positions, seconds)
        for (s, p, _), final in zip(runs, finals):
            if final is None or s.finished:       # a prompt chunk, failed, or ended
                continue
            s.policy.passed(p, final, seconds)
            s.counts["passes"] += 1
            self._commit(s, final.committed(p.tokens))
            block = p.block
            if block is None:
                continue
            s.counts["blocks_verified"] += 1
            verdict = Verdict(**self._header(block), stage=Verdict.STAGE_FINAL,
                              exit_layer=self.target.num_layers,
                              accepted=p.covered + final.accepted,
                              next_token=final.next_token, finished=s.finished)
            s.verdicts[(block.assumed_length, block.assumed_hash, tuple(block.tokens))] = verdict
            self.send(verdict)

    def _pass(self, runs: list) -> list[Optional[Judgement]]:
        """The rows' final verdicts from one pass (None for a prompt chunk). If it raises
        (not a process fault), no sequence has changed: its sessions are re-run one at a
        time and the one that raises ends with INTERNAL (None in its place); no other
        session notices."""
        try:
            finals = iter(self.target_pass.run(
                [row for _, p, row in runs if p is not None],
                [(s.seq, chunk) for s, p, chunk in runs if p is None]))
            return [None if p is None else next(finals) for _, p, _ in runs]
        except Exception as exc:
            if is_process_fault(exc):
                raise
            if len(runs) > 1:
                return [final for run in runs    # not re-run: one that ended in the batch
                        for final in ([None] if run[0].finished else self._pass([run]))]
            self._error(runs[0][0].request, DecodeError.CODE_INTERNAL, fault_reason(exc))
            self._finish(runs[0][0], "failed")
            return [None]

    def _draft_probs(self, s: CloudSession, p: Pass):
        """Sampling: the draft's q rows of p's tokens (dense), which the verdict rule needs."""
        if p.block is None or s.params.greedy:
            return None
        b = p.block
        return dense(b.support_sizes, b.support_ids, b.support_probs,
                     self.target.vocab_size)[p.covered:p.covered + len(p.tokens)]

    def _early_sender(self, s: CloudSession, p: Pass) -> Optional[Callable]:
        """A block's exit heads run in every mode; only modes that use early verdicts get
        them sent, each once (a pass re-run alone after its batch failed repeats them)."""
        if p.block is None:
            return None
        header = self._header(p.block)
        sent: set[int] = set()

        def on_early(layer: int, j: Judgement) -> None:
            if s.params.early_verdicts and layer not in sent and not s.finished:
                sent.add(layer)
                self.send(Verdict(**header, stage=Verdict.STAGE_EARLY, exit_layer=layer,
                                  accepted=p.covered + j.accepted, next_token=j.next_token,
                                  confidence=j.confidence))
        return on_early

    def _header(self, block: DraftBlock) -> dict:
        """The fields by which a verdict names its block."""
        return dict(robot_id=block.robot_id, request_id=block.request_id, round=block.round,
                    assumed_length=block.assumed_length, assumed_hash=block.assumed_hash,
                    block_length=len(block.tokens), cloud_epoch=self.epoch)

    def _commit(self, s: CloudSession, tokens: list[int]) -> None:
        start = len(s.committed)
        s.committed.append(tokens)
        eos = self.target.eos_token_ids
        if s.room <= 0 or any(t in eos for t in tokens):
            self._finish(s, gone="")
        if s.policy.streams_commits:
            self.send(CommittedTokens(s.request.robot_id, s.request.request_id, start,
                                      list(tokens), s.committed.hash(), s.finished, self.epoch))
        self._triage(s)

    def _fits(self, s: CloudSession, positions: int, growth: int = 0) -> bool:
        """Whether s may grow its cache by `positions` within max_cached_tokens, after the
        `growth` of the sessions already in this pass; the session that would cross the
        bound ends OVERLOADED (no other session's cache is touched)."""
        cached, bound = self.cached_tokens() + growth, self.config.max_cached_tokens
        if cached + positions <= bound:
            return True
        self._error(s.request, DecodeError.CODE_OVERLOADED,
                    f"{cached} cached tokens + {positions} would exceed {bound}")
        self._finish(s, "overloaded")
        return False

    def _finish(self, s: CloudSession, gone: str = "failed") -> None:
        """End the session: free its cache and its request's payload, keep the committed
        prefix and verdicts to answer late messages. `gone` says why a session ended before
        its last token ("" = it completed): its blocks are then answered SESSION_GONE."""
        if s.finished:
            return
        s.finished = True
        s.gone = gone
        s.seq = None
        s.blocks = []
        s.next_block = None
        s.policy.queued([])
        s.candidates = None
        s.request = replace(s.request, instruction="", image_data=b"")
