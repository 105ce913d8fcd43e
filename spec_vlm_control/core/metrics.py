"""Per-request metrics, field for field msg/RequestStats.msg.

The edge fills what it sees (tokens, rounds, early verdicts, preemptive hits, wasted drafts,
latencies); the driver adds what only a global view knows (target passes, the time split).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class RequestStats:
    robot_id: str = ""
    request_id: int = 0
    mode: int = 0
    ok: bool = True
    error: str = ""
    tokens: int = 0
    rounds: int = 0
    mean_accepted_per_round: float = 0.0
    early_verdicts: int = 0
    preemptive_hits: int = 0
    preemptive_misses: int = 0
    early_hit_rate: float = 0.0
    wasted_draft_tokens: int = 0
    target_passes: int = 0
    target_passes_per_token: float = 0.0
    time_to_first_token_s: float = 0.0
    total_s: float = 0.0
    draft_s: float = 0.0
    link_s: float = 0.0
    verify_s: float = 0.0
    idle_s: float = 0.0
    token_latencies_s: list[float] = field(default_factory=list)

    @property
    def time_per_token_s(self) -> float:
        return self.total_s / max(1, self.tokens)


class EdgeTally:
    """Counters the edge session keeps while it runs."""

    def __init__(self) -> None:
        self.rounds = 0
        self.accepted = 0
        self.accepted_counts: Counter = Counter()   # accepted draft tokens -> rounds
        self.blocks: list[tuple[int, int]] = []     # (drafted, accepted) of each round
        self.early_verdicts = 0
        self.early_judged = 0          # early verdicts whose final verdict arrived
        self.early_hits = 0            # ...and agreed with it
        self.preemptive_hits = 0
        self.preemptive_misses = 0
        self.wasted_draft_tokens = 0
        self.drafted_tokens = 0        # in every block drafted, sent or not
        self.draft_s = 0.0
        self.draft_intervals: list[tuple[float, float]] = []
        self.blocks_sent = 0
        self.resends = 0               # blocks sent again after a timeout
        self.request_resends = 0       # the request sent again (nothing heard from the cloud)
        self.token_times: list[float] = []

    def judged(self, verdict, drafted: Optional[list[int]]) -> None:
        """One round's final verdict on the block `drafted` (None: not known here, or not
        the tokens the verdict counts, e.g. a cloud-led chain's latest part). A draft
        token the target accepts but that ends the answer (an end token, or the last one
        max_new_tokens allows) comes back as the verdict's next token (verdict.py
        `Judgement.clipped`); it was accepted all the same. A rejected draft token is never
        the next token (greedy: the target's argmax differs; sampling: the residual is 0)."""
        accepted = verdict.accepted
        if (drafted is not None and len(drafted) == verdict.block_length
                and accepted < len(drafted) and drafted[accepted] == verdict.next_token):
            accepted += 1
        self.rounds += 1
        self.accepted += accepted
        self.accepted_counts[accepted] += 1
        self.blocks.append((verdict.block_length, accepted))

    def verified(self, count: int, at: float) -> None:
        self.token_times.extend([at] * count)

    def stats(self, started: float, finished: float, tokens: int) -> RequestStats:
        times = self.token_times[:tokens]
        latencies = [b - a for a, b in zip([started] + times, times)]
        return RequestStats(
            tokens=tokens, rounds=self.rounds,
            mean_accepted_per_round=self.accepted / max(1, self.rounds),
            early_verdicts=self.early_verdicts, preemptive_hits=self.preemptive_hits,
            preemptive_misses=self.preemptive_misses,
            early_hit_rate=self.early_hits / max(1, self.early_judged),
            wasted_draft_tokens=self.wasted_draft_tokens,
            time_to_first_token_s=(times[0] - started) if times else 0.0,
            total_s=finished - started, draft_s=self.draft_s, token_latencies_s=latencies)
