"""The action language: formatter, single-step parser, limits."""
import math

import pytest

from spec_vlm_control.action import (ActionLimits, PlanError, Step, format_plan, format_step,
                                     parse_step)
from spec_vlm_control.action.grammar import is_viable_prefix


def test_format_plan_is_canonical_and_short():
    steps = [Step("turn_left", 30.0), Step("forward", 1.25), Step("stop")]
    assert format_plan(steps) == "turn_left 30 ; forward 1.25 ; stop"
    assert format_step(Step("back", 0.5)) == "back 0.5"
    assert format_step(Step("turn_right", 12.345)) == "turn_right 12.35"  # hundredths


@pytest.mark.parametrize("step", [Step("jump", 1.0), Step("forward"), Step("stop", 1.0),
                                  Step("forward", -1.0), Step("forward", 0.0),
                                  Step("forward", math.nan), Step("turn_left", math.inf),
                                  Step("forward", 0.001)])
def test_formatter_refuses_what_the_parser_would_reject(step):
    with pytest.raises(PlanError):
        format_step(step)


@pytest.mark.parametrize("text, expected", [
    ("forward 0.5", Step("forward", 0.5)),
    ("  turn_right\t45  ", Step("turn_right", 45.0)),
    ("\nsit", Step("sit")),
    ("turn_left 007", Step("turn_left", 7.0)),
])
def test_parse_valid_steps(text, expected):
    assert parse_step(text) == (expected, None)


@pytest.mark.parametrize("text, reason", [
    ("jump 1", "unknown verb"),
    ("Forward 1", "malformed"),
    ("forward", "needs a value"),
    ("stop 1", "takes no value"),
    ("forward -1", "malformed"),
    ("forward +1", "malformed"),
    ("forward 1e0", "malformed"),
    ("forward nan", "malformed"),
    ("forward inf", "malformed"),
    ("forward 1.", "malformed"),
    ("forward .5", "malformed"),
    ("forward 0", "finite and > 0"),
    ("forward 1 2", "malformed"),
    ("forward1", "malformed"),
    ("", "malformed"),
    ("forward \uff11", "malformed"),     # the language is ASCII: no full-width digits,
    ("forward \u0661", "malformed"),     # no Arabic-Indic digits,
    ("forward\u00a01", "malformed"),     # no Unicode spaces
    ("\u3000stop", "malformed"),
])
def test_parse_rejects(text, reason):
    with pytest.raises(PlanError, match=reason):
        parse_step(text)


def test_out_of_range_is_rejected_or_clamped_per_limits():
    strict = ActionLimits(max_distance_m=2.0, max_turn_deg=90.0, clamp=False)
    with pytest.raises(PlanError, match="forward 2.5 exceeds the limit 2 m"):
        parse_step("forward 2.5", strict)
    with pytest.raises(PlanError, match="exceeds the limit 90 deg"):
        parse_step("turn_left 120", strict)
    clamping = ActionLimits(max_distance_m=2.0, max_turn_deg=90.0, clamp=True)
    step, note = parse_step("forward 2.5", clamping)
    assert step == Step("forward", 2.0) and "clamped" in note
    assert parse_step("turn_left 90", clamping) == (Step("turn_left", 90.0), None)


@pytest.mark.parametrize("text", ["", " ", "tur", "turn_", "turn_left ", "turn_left 3",
                                  "turn_left 3.", "turn_left 3.5", "turn_left 3.5 ", "stop ",
                                  "s"])
def test_viable_prefixes(text):
    assert is_viable_prefix(text)


@pytest.mark.parametrize("text", ["x", "jum", "forwardd", "stop 1", "forward -", "forward 1x",
                                  "forward 1. ", "forward 1 2", "sit now",
                                  "turn_left " + "1" * 40, "forward\u3000", "forward \uff11",
                                  "\u2003"])
def test_dead_prefixes(text):
    assert not is_viable_prefix(text)
