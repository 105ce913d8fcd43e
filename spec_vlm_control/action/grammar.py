"""The action language: what the VLM says and the controller executes.

A plan is a sequence of steps separated by `;`, each a verb and, for motions, one
plain decimal number::

    turn_left 30 ; forward 1.25 ; stop

Verbs and units: `forward`/`back`/`left`/`right` take metres, `turn_left`/`turn_right`
take degrees, `stop`/`stand`/`sit` take no value. Numbers are unsigned decimals
(`[0-9]+` or `[0-9]+.[0-9]+`): no sign, exponent, `nan` or `inf`, so the direction lives in
the verb only and a value can never be non-finite. Lower case only. Whitespace (space, tab,
newline) is free. The language is ASCII: Python's `\\d` and `\\s` would also match
full-width digits and Unicode spaces, which `float` then reads as numbers.

The grammar is kept small and regular so that a prefix of a step can be judged
viable or dead before its terminator arrives (garbage stops the robot early), and
so that one module both *produces* answers (the simulator's expert, via
`format_plan`) and *parses* them (the controller).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Optional


class Unit(Enum):
    METRES = "m"
    DEGREES = "deg"


# verb -> unit of its value (None: the verb takes no value)
VERBS: dict[str, Optional[Unit]] = {
    "forward": Unit.METRES,
    "back": Unit.METRES,
    "left": Unit.METRES,
    "right": Unit.METRES,
    "turn_left": Unit.DEGREES,
    "turn_right": Unit.DEGREES,
    "stop": None,
    "stand": None,
    "sit": None,
}

SEPARATOR = ";"
# A step longer than this (after leading whitespace) cannot be valid: it is rejected
# without waiting for a terminator, which also bounds the parser's memory.
MAX_STEP_CHARS = 40
# The formatter's resolution: centimetres and hundredths of a degree.
DECIMALS = 2

# The whitespace of the language, for `str.strip` (whose default strips Unicode spaces too).
SPACE = " \t\r\n"
# Text quoted in an error message is cut to this many characters: a rejected chunk never
# reaches plan_status, diagnostics or the log whole.
QUOTED_CHARS = 80

_STEP = re.compile(r"([a-z_]+)(?:[ \t\r\n]+([0-9]+(?:\.[0-9]+)?))?")
_NUMBER_PREFIX = re.compile(r"[0-9]+(?:\.[0-9]*)?")
_SPACES = re.compile(r"[ \t\r\n]+")


class PlanError(ValueError):
    """A step that must not be executed (malformed, unknown verb, out of range)."""


def quoted(text: str) -> str:
    """`text` as quoted in an error message: repr, cut to QUOTED_CHARS with a marker."""
    if len(text) <= QUOTED_CHARS:
        return repr(text)
    return f"{text[:QUOTED_CHARS]!r}... ({len(text)} chars)"


@dataclass(frozen=True)
class Step:
    verb: str
    value: Optional[float] = None  # metres or degrees, per VERBS; None for stop/stand/sit

    @property
    def unit(self) -> Optional[Unit]:
        return VERBS[self.verb]

    def __str__(self) -> str:
        return format_step(self)


@dataclass(frozen=True)
class ActionLimits:
    """Largest values the controller accepts; beyond them a step is rejected or clamped."""
    max_distance_m: float = 3.0
    max_turn_deg: float = 180.0
    clamp: bool = False

    def maximum(self, unit: Unit) -> float:
        return self.max_distance_m if unit is Unit.METRES else self.max_turn_deg


def _check_shape(step: Step) -> None:
    if step.verb not in VERBS:
        raise PlanError(f"unknown verb {quoted(step.verb)}")
    unit = VERBS[step.verb]
    if unit is None:
        if step.value is not None:
            raise PlanError(f"{step.verb!r} takes no value")
        return
    if step.value is None:
        raise PlanError(f"{step.verb!r} needs a value in {unit.value}")
    if not math.isfinite(step.value) or step.value <= 0.0:
        raise PlanError(f"{step.verb} {step.value}: value must be finite and > 0")


def format_step(step: Step) -> str:
    """Canonical text of one step (values rounded to DECIMALS, trailing zeros dropped)."""
    _check_shape(step)
    if step.value is None:
        return step.verb
    number = f"{step.value:.{DECIMALS}f}".rstrip("0").rstrip(".")
    if number == "0":
        raise PlanError(f"{step.verb} {step.value}: rounds to zero")
    return f"{step.verb} {number}"


def format_plan(steps: Iterable[Step]) -> str:
    """Canonical text of a plan, e.g. `turn_left 30 ; forward 1.25`."""
    return f" {SEPARATOR} ".join(format_step(s) for s in steps)


def within_limits(step: Step, limits: ActionLimits) -> tuple[Step, Optional[str]]:
    """The step as it may be executed, and a note if it had to be clamped.

    Raises PlanError when the value is beyond the limit and clamping is off.
    """
    if step.unit is None or step.value <= limits.maximum(step.unit):
        return step, None
    maximum = limits.maximum(step.unit)
    what = f"{format_step(step)} exceeds the limit {maximum:g} {step.unit.value}"
    if not limits.clamp:
        raise PlanError(what)
    return Step(step.verb, maximum), f"{what}: clamped"


def parse_step(text: str, limits: ActionLimits = ActionLimits()) -> tuple[Step, Optional[str]]:
    """One step's text (without separator) -> (step, clamp note or None)."""
    body = text.strip(SPACE)
    match = _STEP.fullmatch(body)
    if match is None:
        raise PlanError(f"malformed step {quoted(body)}")
    verb, number = match.groups()
    step = Step(verb, None if number is None else float(number))
    _check_shape(step)
    return within_limits(step, limits)


def is_viable_prefix(text: str) -> bool:
    """Whether more text could still complete `text` into a valid step.

    Lets the parser reject garbage as soon as it appears rather than at the next `;`.
    """
    body = text.lstrip(SPACE)
    if len(body) > MAX_STEP_CHARS:
        return False
    if not body:
        return True
    words = _SPACES.split(body.rstrip(SPACE))
    closed = body[-1] in SPACE
    if len(words) > 2:
        return False
    verb_closed = len(words) == 2 or closed
    if not verb_closed:
        return any(v.startswith(words[0]) for v in VERBS)
    if words[0] not in VERBS:
        return False
    if len(words) == 1:
        return True
    if VERBS[words[0]] is None:
        return False
    if closed:
        return _STEP.fullmatch(body.strip(SPACE)) is not None
    return _NUMBER_PREFIX.fullmatch(words[1]) is not None
