"""The pure controller against hostile input: stamps, repeats, non-ASCII and oversized text,
and a hypothesis fuzz of its message handling (simulated time, no ROS)."""
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spec_vlm_control.action import ActionLimits, PlanStream
from spec_vlm_control.control.controller import NS_PER_S, Level
from spec_vlm_control.core.protocol import PlanStatus, RequestIds, VerifiedTokens
from test_controller_core import LIMITS, PERIOD, WALL_NS, Sim, integrate, stamped

YEAR_S = 365 * 24 * 3600


def raw(request_id, seq, text, stamp_ns, final=True):
    return VerifiedTokens(request_id, seq, [], text, final, stamp_ns)


def rejected_without_moving(sim, request_id, reason):
    assert not any(c.moving for c in sim.run(1.0))
    assert "command" not in sim.backend.kinds()
    assert sim.statuses()[-1] == (request_id, PlanStatus.REJECTED)
    assert reason in sim.ctrl.events[-1].detail


# -- stamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stamp_ns", [-1, -NS_PER_S, -2**31 * NS_PER_S])
def test_a_negative_stamp_is_rejected(stamp_ns):
    """Before 1970, or a malformed header stamp (test_nodes_convert.py: nanosec >= 1 s)."""
    sim = Sim()
    sim.ctrl.on_chunk(raw(1, 0, "forward 1", stamp_ns), WALL_NS, sim.now)
    rejected_without_moving(sim, 1, f"invalid frame stamp ({stamp_ns} ns)")


@pytest.mark.parametrize("ahead_s", [0.06, 5.0, YEAR_S])
def test_a_stamp_from_the_future_is_rejected(ahead_s):
    sim = Sim()
    sim.chunk(1, 0, "forward 1", final=True, age=-ahead_s)
    rejected_without_moving(sim, 1, "in the future (clock skew limit 0.05 s)")


def test_the_largest_stamp_is_rejected_and_zero_is_too_old():
    sim = Sim()
    sim.ctrl.on_chunk(raw(1, 0, "forward 1", 2**31 * NS_PER_S - 1), WALL_NS, sim.now)
    rejected_without_moving(sim, 1, "in the future")
    sim.ctrl.on_chunk(raw(2, 0, "forward 1", 0), WALL_NS, sim.now)
    rejected_without_moving(sim, 2, "frame too old")


def test_a_stamp_within_the_clock_skew_runs():
    sim = Sim()
    sim.chunk(1, 0, "forward 0.25", final=True, age=-0.04)
    assert integrate(sim.run(2.0), "vx") == pytest.approx(0.25)
    assert sim.statuses()[-1] == (1, PlanStatus.FINISHED)


# -- at most once ---------------------------------------------------------------------------


@pytest.mark.parametrize("first, status", [("forward 0.25", PlanStatus.FINISHED),
                                           ("sprint 1", PlanStatus.REJECTED)])
def test_a_repeated_chunk_0_never_runs_an_ended_plan_again(first, status):
    sim = Sim()
    request = RequestIds(nonce=7).next()
    sim.chunk(request, 0, first, final=True)
    sim.run(2.0)
    assert sim.statuses()[-1] == (request, status)
    events = len(sim.ctrl.events)
    sim.backend.calls.clear()
    sim.chunk(request, 0, "forward 0.25", final=True)  # the same message again
    sim.chunk(request, 1, "forward 0.25", final=True)
    assert not any(c.moving for c in sim.run(1.0))
    assert sim.backend.calls == [] and len(sim.ctrl.events) == events
    assert any(i.level is Level.WARN and f"request {request} has ended" in i.message
               for i in sim.ctrl.incidents)


def test_a_restarted_edge_runs_its_first_request():
    sim = Sim()
    before, after = RequestIds(nonce=1), RequestIds(nonce=2)  # the edge restarted between
    first = before.next()
    sim.chunk(first, 0, "forward 0.25", final=True)
    sim.run(2.0)
    restarted = after.next()
    assert restarted != first
    sim.chunk(restarted, 0, "back 0.25", final=True)
    assert integrate(sim.run(2.0), "vx") == pytest.approx(-0.25)
    assert sim.statuses()[-1] == (restarted, PlanStatus.FINISHED)


def test_ended_plans_are_remembered_up_to_a_bound():
    sim = Sim(recent_plans=4)
    for request in range(10):
        sim.chunk(request, 0, "sprint", final=True)
    assert list(sim.ctrl.ended) == [6, 7, 8, 9] and sim.ctrl.ended_set == {6, 7, 8, 9}


# -- ASCII ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["forward \uff11", "forward 0.\uff15", "forward\u30001",
                                  "forward\u00a01", "\u2003forward 1", "forward 1\u2028",
                                  "turn_left \u0664\u0665"])
def test_non_ascii_digits_and_spaces_never_move(text):
    sim = Sim()
    sim.chunk(1, 0, text + " ;", final=True)
    rejected_without_moving(sim, 1, "malformed step")


# -- bounded text ---------------------------------------------------------------------------


@pytest.mark.parametrize("flood", [" " * 2**20, "x" * 2**20, "forward 1 ; " * 100_000])
def test_a_megabyte_chunk_is_rejected_at_once_and_never_echoed(flood):
    sim = Sim()
    sim.chunk(1, 0, "forward 2 ;")
    assert sim.run(0.5)[-1].moving
    t0 = time.perf_counter()
    sim.chunk(1, 1, flood)
    elapsed = time.perf_counter() - t0
    assert sim.backend.kinds()[-1] == "stop"
    event = sim.ctrl.events[-1]
    assert (event.request_id, event.status, event.detail) == (
        1, PlanStatus.REJECTED, "plan text longer than 256 characters")
    assert elapsed < 0.01
    assert all(len(i.message) < 200 for i in sim.ctrl.incidents)


def test_a_rejected_step_is_quoted_short():
    sim = Sim(max_plan_chars=2**21)
    sim.chunk(1, 0, "forward 1 ; " + "jump" * 100_000 + " ;")
    detail = sim.ctrl.events[-1].detail
    assert sim.statuses()[-1] == (1, PlanStatus.REJECTED)
    assert detail.startswith("unknown verb 'jumpjump") and detail.endswith("(400000 chars)")
    assert len(detail) < 150


def test_a_whitespace_flood_costs_linear_time():
    stream = PlanStream()
    t0 = time.perf_counter()
    for _ in range(200):
        stream.feed(" \t\n" * 20_000)
    elapsed = time.perf_counter() - t0
    assert stream.pending == ""  # leading whitespace is not kept
    assert stream.feed("forward 1", final=True)[0].value == 1.0
    assert elapsed < 0.5


# -- fuzz -----------------------------------------------------------------------------------

STEPS = ["forward 0.5 ;", "turn_left 30 ;", "back 0.2", "right 3 ;", "sit ;", "stop"]
FRAGMENTS = ["forward", "turn_right", " ", ";", "1", "0.5", "180", "\uff11", "\u3000", "\n",
             "jump", "-1", "nan"]
# Hypothesis leans towards the first choice of each strategy: valid plans and fresh
# stamps come first, so that most examples move the robot before the hostile parts arrive.
texts = st.one_of(st.lists(st.sampled_from(STEPS), min_size=1, max_size=3).map(" ".join),
                  st.lists(st.sampled_from(STEPS + FRAGMENTS), max_size=6).map("".join),
                  st.text(max_size=20), st.just(" " * 300))
ages_ns = st.one_of(st.integers(0, NS_PER_S // 2), st.integers(-NS_PER_S // 10, 3 * NS_PER_S // 2))
stamps_ns = st.one_of(ages_ns.map(lambda age_ns: WALL_NS - age_ns), st.sampled_from(
    [0, -1, -NS_PER_S, (2**31 - 1) * NS_PER_S, WALL_NS + YEAR_S * NS_PER_S]))
request_ids = st.sampled_from([1, 2, 3, 2**32 + 1, 2**64 - 1])


@st.composite
def chunks(draw):
    """One chunk of anything."""
    return VerifiedTokens(draw(request_ids), draw(st.integers(0, 3)), [], draw(texts),
                          draw(st.booleans()), draw(stamps_ns))


@st.composite
def plans(draw):
    """A request's chunks, cut anywhere, possibly reordered and repeated."""
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=3)))
    bounds = [0, *cuts, len(text)]
    deltas = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    order = list(range(len(deltas)))
    if draw(st.integers(0, 3)) == 3:
        order = draw(st.permutations(order))
    order += draw(st.lists(st.sampled_from(order), max_size=2))
    request, stamp_ns = draw(request_ids), draw(stamps_ns)
    return [VerifiedTokens(request, i, [], deltas[i], i == len(deltas) - 1, stamp_ns)
            for i in order]


events = st.one_of(
    st.tuples(st.just("plan"), plans()),
    st.tuples(st.just("plan"), plans()),
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("chunk"), chunks()),
    st.one_of(st.tuples(st.just("estop"), st.sampled_from([False, False, True])),
              st.tuples(st.just("link"), st.sampled_from([False, False, True])),
              st.tuples(st.just("range"), st.sampled_from([0.1, 2.0, math.inf, -math.inf,
                                                           math.nan]))))


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(events, max_size=20))
def test_fuzzed_messages_never_raise_rerun_or_exceed_limits(script):
    sim = Sim(max_frame_age_at_start_s=1.0, action=ActionLimits(max_distance_m=3.0))
    ctrl = sim.ctrl
    opened_ok = {}       # request id -> whether its chunk 0 carried a usable stamp
    # A valid plan is running when the fuzzed messages arrive, a few periods apart.
    script = [("plan", [stamped(1, 0, "forward 0.5 ; turn_left"), stamped(1, 1, " 30", True)])]\
        + [event for pair in zip(script, [("tick", 3)] * len(script)) for event in pair]
    for kind, arg in script:
        if kind in ("plan", "chunk"):
            for chunk in arg if kind == "plan" else [arg]:
                plan_before = ctrl.plan
                ctrl.on_chunk(chunk, WALL_NS, sim.now)
                if ctrl.plan is not None and ctrl.plan is not plan_before:
                    age_s = (WALL_NS - chunk.stamp_ns) / NS_PER_S
                    opened_ok[chunk.request_id] = chunk.stamp_ns >= 0 and -0.05 <= age_s <= 1.0
        elif kind == "tick":
            for _ in range(arg):
                command = ctrl.tick(sim.now)
                sim.now += PERIOD
                assert abs(command.vx) <= LIMITS.linear_speed + 1e-12
                assert abs(command.vy) <= LIMITS.lateral_speed + 1e-12
                assert abs(command.vyaw) <= LIMITS.yaw_rate + 1e-12
                if command.moving:  # only a verified, fresh, current plan moves the robot
                    assert ctrl.plan is not None and opened_ok[ctrl.plan.request_id]
                    assert not ctrl.estop and not ctrl.link_failed
        elif kind == "estop":
            ctrl.on_estop(arg, sim.now)
        elif kind == "link":
            ctrl.on_link(arg, sim.now)
        else:
            ctrl.on_range(arg, sim.now)
    # At most once: a request starts at most once and ends at most once, in that order.
    by_request = {}
    for event in ctrl.events:
        by_request.setdefault(event.request_id, []).append(event.status)
    for statuses in by_request.values():
        ends = [s for s in statuses if s != PlanStatus.STARTED]
        assert len(ends) <= 1 and statuses.count(PlanStatus.STARTED) <= 1
        assert statuses[0] == PlanStatus.STARTED or statuses == ends
    for _, kind, command in sim.backend.calls:
        assert kind != "command" or command.moving
