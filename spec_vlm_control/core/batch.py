"""What the cloud's batched passes cost and how they are used.

`PassLog` keeps the recent passes of one CloudVerifier (rows, positions, queue waits, busy
time) for the cloud node's /diagnostics and for the fleet benchmark. `microbenchmark` times
one batched target pass against the same rows one session per pass, cache assembly included
(the gather of every row's cache into the padded view and the scatter of the new keys and
values, core/models/decoder.py), on any DecoderAdapter.
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass

import torch

from .models.base import DecoderAdapter, Prompt


@dataclass
class PassRecord:
    start: float
    end: float
    rows: int            # sessions in the pass
    positions: int       # positions fed, summed over rows (0 for a prefill chunk)
    width: int           # longest row: rows x width positions were computed


class PassLog:
    """The last `size` passes and queue waits (seconds from ready to the pass's start):
    enough for the diagnostics' one-second window, small enough that a long-running cloud
    retains no more than a few kB for it."""

    def __init__(self, size: int = 256):
        self.passes: deque[PassRecord] = deque(maxlen=size)
        self.waits: deque[float] = deque(maxlen=size)
        self.total = 0

    def record(self, start: float, end: float, waits: list[float], positions: list[int]) -> None:
        self.passes.append(PassRecord(start, end, len(waits), sum(positions), max(positions)))
        self.waits.extend(waits)
        self.total += 1

    def summary(self, now: float, window_s: float) -> dict:
        """Over the passes that ended in the last `window_s`: mean sessions per pass, p99
        queue wait (ms, recent waits), fraction of the window spent in passes, and padding:
        the fraction of computed positions that were padding (verification passes)."""
        passes, waits = list(self.passes), sorted(self.waits)  # copies: read from other threads
        recent = [p for p in passes if p.end > now - window_s]
        busy = sum(p.end - max(p.start, now - window_s) for p in recent)
        fed = [p for p in recent if p.positions]
        computed = sum(p.rows * p.width for p in fed)
        return dict(
            batch_size=statistics.fmean(p.rows for p in recent) if recent else 0.0,
            queue_wait_p99_ms=1000.0 * waits[min(len(waits) - 1, int(0.99 * len(waits)))]
            if waits else 0.0,
            busy_fraction=min(1.0, busy / window_s),
            padding_fraction=1.0 - sum(p.positions for p in fed) / computed if computed else 0.0)


def microbenchmark(adapter: DecoderAdapter, shapes=((8, 1), (8, 5), (32, 5)),
                   prompt_length: int = 64, repeats: int = 21, seed: int = 0) -> list[dict]:
    """Per (sessions, positions): median seconds of one batched pass of `sessions` rows
    feeding `positions` positions each after a `prompt_length`-token prompt (distinct random
    prompts), and of the same rows one session per pass; cache assembly included, rolling
    the caches back between repeats excluded. Set torch's threads before calling."""
    g = torch.Generator().manual_seed(seed)
    image_token = getattr(adapter, "image_token_id", None)   # text-only prompts

    def prompt() -> Prompt:
        ids = torch.randint(0, adapter.vocab_size, (1, prompt_length), generator=g)
        if image_token is not None:
            ids = ids.masked_fill(ids == image_token, (image_token + 1) % adapter.vocab_size)
        return Prompt(ids)

    out = []
    for sessions, positions in shapes:
        states = [adapter.prefill(prompt()) for _ in range(sessions)]
        rows = [torch.randint(0, adapter.vocab_size, (positions - 1,), generator=g).tolist()
                for _ in range(sessions)]

        def timed(groups) -> float:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for group in groups:
                    adapter.extend_batch([states[b] for b in group], [rows[b] for b in group])
                times.append(time.perf_counter() - t0)
                for state in states:
                    adapter.crop(state, prompt_length - 1, state.pending)
            return statistics.median(times)

        batched = timed([range(sessions)])
        alone = timed([[b] for b in range(sessions)])
        out.append(dict(sessions=sessions, positions=positions, batched_s=batched,
                        one_per_pass_s=alone, speedup=alone / batched))
    return out
