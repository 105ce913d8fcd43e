"""What the cloud's batched passes cost and how they are used.

`PassLog` keeps the recent passes of one CloudVerifier (rows, positions, queue waits, busy
time) for the cloud node's /diagnostics and for the fleet benchmark. `prefill_width` is the
scheduler's rule for how much of a prompt joins a pass beside other sessions' blocks.
`microbenchmark` times one batched target pass against the same rows one session per pass,
cache assembly included (the gather of every row's cache into the padded view and the
scatter of the new keys and values, core/models/decoder.py), on any DecoderAdapter, and
`prefill_microbenchmark` a prompt prefill joining a pass of blocks against separate passes.
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
    positions: int       # positions fed, summed over rows (prompt chunks included)
    width: int           # longest row: rows x width positions were computed
    prompts: int = 0     # rows that were prompt chunks


class PassLog:
    """The last `size` passes and queue waits (seconds from ready to the pass's start):
    enough for the diagnostics' one-second window, small enough that a long-running cloud
    retains no more than a few kB for it."""

    def __init__(self, size: int = 256):
        self.passes: deque[PassRecord] = deque(maxlen=size)
        self.waits: deque[float] = deque(maxlen=size)
        self.total = 0

    def record(self, start: float, end: float, waits: list[float], positions: list[int],
               prompts: int = 0) -> None:
        self.passes.append(PassRecord(start, end, len(waits), sum(positions), max(positions),
                                      prompts))
        self.waits.extend(waits)
        self.total += 1

    def summary(self, now: float, window_s: float) -> dict:
        """Over the passes that ended in the last `window_s`: mean sessions per pass, p99
        queue wait (ms, recent waits), fraction of the window spent in passes, and padding:
        the fraction of computed positions that were padding."""
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


def prefill_width(fed: list[int], prompts: list[int], budget: int, max_padding: float) -> int:
    """How many positions each prompt row feeds in a pass whose other rows feed `fed`
    positions each, prompts[i] being prompt i's positions still unfed: the widest W within
    budget / rows (and no narrower than the other rows) whose padding, the share of the
    rows x W positions computed that feed nothing, stays within `max_padding`. A prompt
    longer than W goes on in the next passes, so padding waste stays bounded while a prompt
    shares the passes that run anyway."""
    rows, floor = len(fed) + len(prompts), max(fed, default=1)
    for width in range(min(max(prompts), budget // rows), floor, -1):
        if sum(fed) + sum(min(n, width) for n in prompts) >= (1 - max_padding) * rows * width:
            return width
    return floor


def microbenchmark(adapter: DecoderAdapter, shapes=((8, 1), (8, 5), (32, 5)),
                   prompt_length: int = 64, repeats: int = 21, seed: int = 0) -> list[dict]:
    """Per (sessions, positions): median seconds of one batched pass of `sessions` rows
    feeding `positions` positions each after a `prompt_length`-token prompt (distinct random
    prompts), and of the same rows one session per pass; cache assembly included, rolling
    the caches back between repeats excluded. Set torch's threads before calling."""
    out = []
    for sessions, positions in shapes:
        states, rows = _rows(adapter, sessions, positions, prompt_length, seed)

        def timed(groups) -> float:
            times = []
            for _ in range(repeats):
                t0 = _clock(adapter)
                for group in groups:
                    adapter.extend_batch([states[b] for b in group], [rows[b] for b in group])
                times.append(_clock(adapter) - t0)
                for state in states:
                    adapter.crop(state, prompt_length - 1, state.pending)
            return statistics.median(times)

        batched = timed([range(sessions)])
        alone = timed([[b] for b in range(sessions)])
        out.append(dict(sessions=sessions, positions=positions, batched_s=batched,
                        one_per_pass_s=alone, speedup=alone / batched))
    return out


def _clock(adapter: DecoderAdapter) -> float:
    """perf_counter once the adapter's device has run what was queued on it: a GPU runs
    kernels asynchronously, so without the wait a pass would be timed as it is enqueued."""
    device = torch.device(getattr(adapter, "device", "cpu"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _rows(adapter: DecoderAdapter, sessions: int, positions: int, prompt_length: int,
          seed: int) -> tuple[list, list[list[int]]]:
    """`sessions` sequences after distinct random `prompt_length`-token text prompts, and a
    row of `positions` positions (pending + positions - 1 random tokens) for each."""
    g = torch.Generator().manual_seed(seed * 1000 + sessions * 10 + positions)
    image_token = getattr(adapter, "image_token_id", None)   # text-only prompts

    def prompt() -> Prompt:
        ids = torch.randint(0, adapter.vocab_size, (1, prompt_length), generator=g)
        if image_token is not None:
            ids = ids.masked_fill(ids == image_token, (image_token + 1) % adapter.vocab_size)
        return Prompt(ids)

    states = [adapter.prefill(prompt()) for _ in range(sessions)]
    rows = [torch.randint(0, adapter.vocab_size, (positions - 1,), generator=g).tolist()
            for _ in range(sessions)]
    return states, rows


def prefill_microbenchmark(adapter: DecoderAdapter, prompt: Prompt, blocks: int = 7,
                           positions: int = 5, budget: int = 256, max_padding: float = 0.25,
                           prompt_length: int = 64, repeats: int = 21, seed: int = 0) -> dict:
    """One prompt prefill (`prompt`, e.g. a scene's image prompt) and `blocks` rows of
    `positions` positions after `prompt_length`-token prompts, three ways: as separate
    passes (the prefill alone, then the blocks batched), as one pass (the whole prompt
    padded beside the blocks), and as the scheduler runs them (a `prefill_width` chunk beside
    the blocks, the rest of the prompt alone). Median seconds of each and the padding share
    of its computed positions; the vision tower and the rollbacks between repeats excluded.
    Set torch's threads before calling."""
    states, rows = _rows(adapter, blocks, positions, prompt_length, seed)
    unfed = len(adapter.begin(prompt).unfed or ())
    if not unfed:
        raise ValueError("the adapter prefills at once: no prompt chunk can join a pass")
    chunk = prefill_width([positions] * blocks, [unfed], budget, max_padding)
    plans = dict(separate=[(False, unfed), (True, 0)], one_pass=[(True, unfed)],
                 scheduled=[(True, chunk), (False, unfed - chunk)])
    out = dict(blocks=blocks, positions=positions, prompt_positions=unfed, chunk=chunk)
    for name, plan in plans.items():
        plan = [(with_blocks, n) for with_blocks, n in plan if with_blocks or n]
        times = []
        for _ in range(repeats):
            state = adapter.begin(prompt)
            t0 = _clock(adapter)
            for with_blocks, n in plan:
                adapter.extend_batch(states if with_blocks else [], rows if with_blocks else [],
                                     chunks=[(state, n)] if n else [])
            times.append(_clock(adapter) - t0)
            for s in states:
                adapter.crop(s, prompt_length - 1, s.pending)
        computed = sum(max(n, positions if b else 0) * ((blocks if b else 0) + (n > 0))
                       for b, n in plan)
        out[f"{name}_s"] = statistics.median(times)
        out[f"{name}_padding"] = 1.0 - (unfed + blocks * positions) / computed
    return out
