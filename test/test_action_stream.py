"""Incremental plan parsing over verified text deltas (property tests)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spec_vlm_control.action import (VERBS, ActionLimits, PlanError, PlanStream, Step,
                                     format_plan, parse_step)

LIMITS = ActionLimits(max_distance_m=3.0, max_turn_deg=180.0)


@st.composite
def steps(draw):
    verb = draw(st.sampled_from(sorted(VERBS)))
    unit = VERBS[verb]
    if unit is None:
        return Step(verb)
    top = round(LIMITS.maximum(unit) * 100)
    return Step(verb, draw(st.integers(1, top)) / 100)  # the formatter's 0.01 grid


plans = st.lists(steps(), min_size=1, max_size=6)


@st.composite
def split(draw, text):
    """`text` cut at arbitrary points into deltas (empty deltas included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def run_stream(deltas, limits=LIMITS):
    """Feed deltas (the last one final); return the emitted steps and the error, if any."""
    stream, emitted = PlanStream(limits), []
    try:
        for i, delta in enumerate(deltas):
            emitted += stream.feed(delta, final=i == len(deltas) - 1)
    except PlanError as error:
        return emitted, error
    return emitted, None


@settings(max_examples=200, deadline=None)
@given(plans, st.data())
def test_any_split_of_a_valid_plan_parses_to_the_same_steps(plan, data):
    text = format_plan(plan)
    if data.draw(st.booleans()):
        text += " ;"  # a trailing separator is allowed
    emitted, error = run_stream(data.draw(split(text)))
    assert error is None
    assert emitted == plan


@settings(max_examples=100, deadline=None)
@given(plans, st.data())
def test_free_whitespace_does_not_change_the_steps(plan, data):
    space = st.text(" \t\n", max_size=3)
    parts = []
    for step in plan:
        verb, *value = str(step).split()
        parts.append(data.draw(space) + verb + data.draw(space.filter(bool)).join([""] + value)
                     + data.draw(space))
    text = ";".join(parts)
    assert run_stream(data.draw(split(text))) == (plan, None)


def test_a_step_is_released_only_when_terminated():
    stream = PlanStream(LIMITS)
    assert stream.feed("turn_left 1") == []
    assert stream.feed("0") == []               # still growing: 10, not 1
    assert stream.feed(" ; forward 0.") == [Step("turn_left", 10.0)]
    assert stream.feed("5") == []
    assert stream.feed("", final=True) == [Step("forward", 0.5)]
    with pytest.raises(PlanError, match="after the end"):
        stream.feed("stop")


def test_garbage_is_rejected_before_its_terminator():
    stream = PlanStream(LIMITS)
    assert stream.feed("forward 1 ; ") == [Step("forward", 1.0)]
    with pytest.raises(PlanError, match="malformed step 'jum'"):
        stream.feed("jum")
    with pytest.raises(PlanError):  # stays rejected
        stream.feed("p ; stop", final=True)


def test_clamping_is_noted():
    stream = PlanStream(ActionLimits(max_distance_m=1.0, clamp=True))
    assert stream.feed("forward 2.5 ;") == [Step("forward", 1.0)]
    assert stream.notes == ["forward 2.5 exceeds the limit 1 m: clamped"]


def reference_parse(text):
    """Whole-text parse: the valid steps before the first invalid segment."""
    segments = text.split(";")
    if not segments[-1].strip():
        segments.pop()
    out = []
    for segment in segments:
        try:
            out.append(parse_step(segment, LIMITS)[0])
        except PlanError:
            return out, False
    return out, True


garbage_alphabet = st.sampled_from(list("forwadbckltun_ispe0123456789.;-+ \tnaifxyzE"))
garbage = st.lists(garbage_alphabet, max_size=60).map("".join)


@settings(max_examples=400, deadline=None)
@given(garbage, st.data())
def test_garbage_never_yields_motion_beyond_its_valid_prefix(text, data):
    emitted, error = run_stream(data.draw(split(text)))
    valid_prefix, all_valid = reference_parse(text)
    # Nothing is invented: what is emitted is a prefix of the steps a whole-text parse
    # accepts, each within limits, and an invalid text always ends in a rejection.
    assert emitted == valid_prefix[:len(emitted)]
    assert all(s.value is None or 0 < s.value <= LIMITS.maximum(s.unit) for s in emitted)
    if all_valid:
        assert (emitted, error) == (valid_prefix, None)
    else:
        assert error is not None


@settings(max_examples=300, deadline=None)
@given(garbage, st.data())
def test_text_whose_first_step_is_invalid_never_moves(text, data):
    first = text.split(";")[0]
    try:
        parse_step(first, LIMITS)
        return  # a valid first step: covered by the test above
    except PlanError:
        pass
    if not text.strip():
        return  # empty answer: nothing to execute, nothing to reject
    emitted, error = run_stream(data.draw(split(text)))
    assert emitted == [] and error is not None
