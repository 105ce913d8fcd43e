"""Incremental parsing of a plan from the verified text stream.

The verified text of one request arrives in deltas cut anywhere (mid-word,
mid-number). A step is released only once it is complete — its `;` has arrived, or
the stream is final — so that `forward 1` followed by `0` is never executed as 1 m.
The first step can therefore run while later steps are still being decoded.

Anything invalid rejects the whole rest of the plan: the caller stops the robot
rather than guessing what was meant. A dead prefix (e.g. `jum`) is rejected at once,
without waiting for its terminator.
"""
from __future__ import annotations

from .grammar import (SEPARATOR, SPACE, ActionLimits, PlanError, Step, is_viable_prefix,
                      parse_step, quoted)


class PlanStream:
    def __init__(self, limits: ActionLimits = ActionLimits()):
        self.limits = limits
        self.pending = ""          # text of the step being received
        self.notes: list[str] = []  # clamping notes, for the log and diagnostics
        self.error: PlanError | None = None
        self.closed = False

    def feed(self, delta: str, final: bool = False) -> list[Step]:
        """Add verified text; return the steps it completes, in order.

        Raises PlanError on the first invalid step; a delta containing an error yields
        no steps at all, and every later call raises the same error.
        """
        if self.error is not None:
            raise self.error
        if self.closed:
            raise PlanError("text after the end of the plan")
        try:
            return self._feed(delta, final)
        except PlanError as error:
            self.error = error
            raise

    def _feed(self, delta: str, final: bool) -> list[Step]:
        *complete, self.pending = (self.pending + delta).split(SEPARATOR)
        if final:
            self.closed = True
            if self.pending.strip(SPACE):
                complete.append(self.pending)
            self.pending = ""
        # Leading whitespace means nothing: dropping it keeps `pending` within a step's length.
        self.pending = self.pending.lstrip(SPACE)
        steps = []
        for text in complete:
            step, note = parse_step(text, self.limits)
            if note:
                self.notes.append(note)
            steps.append(step)
        if not is_viable_prefix(self.pending):
            raise PlanError(f"malformed step {quoted(self.pending.strip(SPACE))}")
        return steps
