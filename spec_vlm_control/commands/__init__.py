"""Subcommands of `spec-vlm` (see cli.py), and the option types they share: numbers checked
when the command line is parsed, so a bad value is a one-line usage error (exit status 2)."""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional


def number(kind: type, low: Optional[float] = None, high: Optional[float] = None,
           low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite `kind` (int or float) in [low, high], (low, high] if
    low_open; None leaves that side unbounded."""
    name = "an integer" if kind is int else "a number"
    allowed = (f"{'(' if low_open else '['}{'-inf' if low is None else low}, "
               f"{'inf' if high is None else high}]")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        above = low is None or value > low or (value == low and not low_open)
        if not (math.isfinite(value) and above and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"{text} is outside {allowed}")
        return value
    return parse


def count(low: int = 1) -> Callable[[str], int]:
    """An integer of at least `low` (tokens, tasks, steps)."""
    return number(int, low)
