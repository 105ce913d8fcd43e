"""The pure controller: motion profile, executor, safety gates, plan lifecycle (simulated time)."""
import math
import threading
import time

import pytest

from spec_vlm_control.action import ActionLimits, Step
from spec_vlm_control.control.backends import Backend, TwistBackend
from spec_vlm_control.control.controller import NS_PER_S, Controller, ControllerConfig, Level
from spec_vlm_control.control.executor import PlanExecutor
from spec_vlm_control.control.motion import Command, MotionLimits, StepMotion, limit_accel
from spec_vlm_control.control.safety import ObstacleGate, Watchdog
from spec_vlm_control.core.protocol import PlanStatus, VerifiedTokens

RATE = 20.0
PERIOD = 1.0 / RATE
LIMITS = MotionLimits(linear_speed=0.5, lateral_speed=0.3, yaw_rate=math.radians(60),
                      linear_accel=1.0, yaw_accel=math.radians(180), max_step_s=8.0,
                      posture_s=1.0)


WALL_NS = 1_700_000_000 * NS_PER_S  # the robot's clock when a chunk arrives


def stamped(request_id, seq, text, final=False, age=0.05):
    """A chunk whose frame is `age` seconds old on arrival (negative: from the future)."""
    return VerifiedTokens(request_id, seq, [], text, final, WALL_NS - round(age * NS_PER_S))


class RecordingBackend(Backend):
    """Records every call with the simulated time at which it was made."""
    name = "recording"

    def __init__(self, clock):
        self.clock = clock
        self.calls = []
        self.errors = []

    def command(self, command):
        self.calls.append((self.clock(), "command", command))

    def stop(self):
        self.calls.append((self.clock(), "stop", None))

    def posture(self, verb):
        self.calls.append((self.clock(), "posture", verb))

    def drain_errors(self):
        errors, self.errors = self.errors, []
        return errors

    def kinds(self):
        return [kind for _, kind, _ in self.calls]


class Sim:
    """A controller on a simulated clock."""

    def __init__(self, **overrides):
        self.now = 100.0
        self.backend = RecordingBackend(lambda: self.now)
        config = ControllerConfig(motion=LIMITS, rate_hz=RATE, **overrides)
        self.ctrl = Controller(config, self.backend)

    def chunk(self, request_id, seq, text, final=False, age=0.05):
        return self.ctrl.on_chunk(stamped(request_id, seq, text, final, age), WALL_NS, self.now)

    def run(self, seconds):
        commands = []
        for _ in range(round(seconds * RATE)):
            commands.append(self.ctrl.tick(self.now))
            self.now += PERIOD
        return commands

    def statuses(self):
        return [(e.request_id, e.status) for e in self.ctrl.events]


def integrate(commands, axis):
    return sum(c.along(axis) for c in commands) * PERIOD


# -- motion profile -------------------------------------------------------------------------


def test_limit_accel_speeds_up_gradually_but_stops_at_once():
    assert limit_accel(0.0, 0.5, 0.05) == pytest.approx(0.05)
    assert limit_accel(0.4, 0.5, 0.05) == pytest.approx(0.45)
    assert limit_accel(0.5, 0.0, 0.05) == 0.0         # stopping is never slowed
    assert limit_accel(0.5, 0.2, 0.05) == 0.2         # nor is slowing down
    assert limit_accel(0.5, -0.5, 0.05) == pytest.approx(-0.05)  # reversing: stop, then ramp


@pytest.mark.parametrize("step, axis, sign, goal", [
    (Step("forward", 1.0), "vx", 1, 1.0),
    (Step("back", 0.3), "vx", -1, 0.3),
    (Step("left", 0.25), "vy", 1, 0.25),
    (Step("right", 0.6), "vy", -1, 0.6),
    (Step("turn_left", 30.0), "vyaw", 1, math.radians(30)),
    (Step("turn_right", 90.0), "vyaw", -1, math.radians(90)),
])
def test_a_step_covers_its_goal_within_speed_and_accel_limits(step, axis, sign, goal):
    executor = PlanExecutor(LIMITS, PERIOD)
    executor.push([step])
    commands = [executor.tick(100.0 + i * PERIOD) for i in range(200)]
    moving = [c for c in commands if c.moving]
    assert integrate(commands, axis) == pytest.approx(sign * goal, abs=1e-9)
    motion = StepMotion.of(step, LIMITS)
    assert all(abs(c.along(axis)) <= motion.speed + 1e-12 for c in moving)
    for a, b in zip(moving, moving[1:-1]):  # the final tick only slows down
        assert abs(b.along(axis)) - abs(a.along(axis)) <= motion.accel * PERIOD + 1e-12
    assert len(moving) * PERIOD == pytest.approx(motion.planned_duration(8.0), abs=1.5 * PERIOD)
    assert executor.idle and not commands[-1].moving
    other_axes = [ax for ax in ("vx", "vy", "vyaw") if ax != axis]
    assert all(c.along(ax) == 0.0 for c in commands for ax in other_axes)


def test_planned_duration_matches_the_trapezoid():
    fwd = StepMotion.of(Step("forward", 2.0), LIMITS)      # ramp 0.5 s over 0.125 m
    assert fwd.planned_duration(10.0) == pytest.approx(2.0 / 0.5 + 0.25)
    short = StepMotion.of(Step("forward", 0.05), LIMITS)   # never reaches cruise speed
    assert short.planned_duration(10.0) == pytest.approx(math.sqrt(0.1))
    assert fwd.planned_duration(1.5) == 1.5


def test_step_duration_is_capped():
    slow = MotionLimits(linear_speed=0.1, max_step_s=1.0)
    executor = PlanExecutor(slow, PERIOD)
    executor.push([Step("forward", 3.0)])
    commands = [executor.tick(i * PERIOD) for i in range(100)]
    assert sum(c.moving for c in commands) == round(1.0 / PERIOD)


def test_switching_axis_drops_the_old_velocity_at_once():
    executor = PlanExecutor(LIMITS, PERIOD)
    executor.push([Step("forward", 1.0), Step("turn_left", 90.0)])
    commands = [executor.tick(i * PERIOD) for i in range(200)]
    first_turn = next(i for i, c in enumerate(commands) if c.vyaw > 0)
    assert commands[first_turn].vx == 0.0
    assert commands[first_turn - 1].vx > 0.0


def test_posture_steps_ask_once_and_hold_still():
    executor = PlanExecutor(LIMITS, PERIOD)
    executor.push([Step("sit"), Step("stand")])
    commands = [executor.tick(i * PERIOD) for i in range(60)]
    assert [c.posture for c in commands if c.posture] == ["sit", "stand"]
    assert not any(c.moving for c in commands)
    assert [i for i, c in enumerate(commands) if c.posture] == [0, round(LIMITS.posture_s / PERIOD)]


def test_a_stalled_loop_is_not_credited_as_motion():
    executor = PlanExecutor(LIMITS, PERIOD)
    executor.push([Step("forward", 1.0)])
    executor.tick(0.0)
    executor.tick(PERIOD)
    executor.tick(5.0)  # 5 s gap: at most two periods are credited
    assert executor.active.covered <= 2 * PERIOD * LIMITS.linear_speed + 1e-12


# -- safety ---------------------------------------------------------------------------------


def test_watchdog_stops_when_motion_is_not_renewed():
    stops = []
    dog = Watchdog(0.2, lambda: stops.append(1))
    dog.renew(True, 10.0)
    assert not dog.check(10.1)
    assert dog.check(10.16) and stops == [1] and dog.trips == 1
    assert not dog.check(11.0)  # only once
    dog.renew(False, 12.0)
    assert not dog.check(13.0)  # not moving: nothing to stop


@pytest.mark.timing
def test_watchdog_thread_stops_within_its_timeout():
    stopped = threading.Event()
    dog = Watchdog(0.2, stopped.set)
    dog.start()
    try:
        t0 = time.monotonic()
        dog.renew(True, t0)
        assert stopped.wait(2.0)
        latency = time.monotonic() - t0
    finally:
        dog.close()
    print(f"\nwatchdog thread stop latency after the last command: {latency * 1000:.0f} ms")
    assert 0.1 <= latency <= 0.5  # design bound 0.2 s; loose for a shared machine


def test_obstacle_gate():
    gate = ObstacleGate(stop_distance_m=0.4, max_age_s=0.5)
    ahead = Command(vx=0.3)
    assert gate.veto(ahead, 0.0) is None                  # no sensor: no veto
    gate.update(0.3, 1.0)
    assert "obstacle 0.30 m ahead" in gate.veto(ahead, 1.1)
    assert gate.veto(Command(vyaw=0.5), 1.1) is None       # turning is allowed
    assert gate.veto(Command(vx=-0.3), 1.1) is None        # backing off is allowed
    assert gate.veto(ahead, 2.0) is None                   # stale reading
    gate.update(math.inf, 3.0)
    assert gate.veto(ahead, 3.1) is None                   # nothing in range
    gate.update(-math.inf, 4.0)
    assert gate.veto(ahead, 4.1) is not None               # too close to measure
    gate.update(math.nan, 4.2)
    assert gate.fresh_range(4.3) == -math.inf              # invalid readings are ignored


# -- plan lifecycle -------------------------------------------------------------------------


def test_first_step_runs_as_soon_as_it_is_complete_and_plan_finishes_with_a_zero():
    sim = Sim()
    sim.chunk(7, 0, "forward 0.")
    assert not any(c.moving for c in sim.run(0.5))  # incomplete: nothing moves
    sim.chunk(7, 1, "5 ; turn_le")
    first = sim.run(PERIOD)[0]
    assert first.vx > 0 and sim.statuses() == [(7, PlanStatus.STARTED)]
    sim.chunk(7, 2, "ft 30", final=True)
    commands = sim.run(5.0)
    assert sim.statuses()[-1] == (7, PlanStatus.FINISHED)
    assert integrate([first] + commands, "vx") == pytest.approx(0.5)
    assert integrate(commands, "vyaw") == pytest.approx(math.radians(30))
    kinds = sim.backend.kinds()
    assert kinds[-1] == "stop" and kinds.count("stop") == 1  # one explicit zero at the end


def test_a_newly_verified_step_asks_for_an_immediate_tick():
    sim = Sim()
    assert not sim.chunk(30, 0, "forward 0.5")
    assert sim.chunk(30, 1, " ; back")
    assert sim.ctrl.tick(sim.now).vx > 0
    # A step is running: the next one waits for its turn.
    assert not sim.chunk(30, 2, " 0.5 ;")


def test_no_verified_step_means_zero_between_steps():
    sim = Sim()
    sim.chunk(1, 0, "forward 0.25 ;")
    sim.run(2.0)  # the step ends; the next is not verified yet
    assert sim.backend.kinds()[-1] == "stop"
    assert sim.ctrl.plan is not None and sim.statuses() == [(1, PlanStatus.STARTED)]
    sim.chunk(1, 1, "back 0.25", final=True)
    commands = sim.run(2.0)
    assert integrate(commands, "vx") == pytest.approx(-0.25)


@pytest.mark.parametrize("texts, reason", [
    (["jump ;"], "unknown verb 'jump'"),
    (["jum", "p ;"], "malformed step 'jum'"),
    (["forward 9 ;"], "exceeds the limit"),
    (["forward nan ;"], "malformed"),
    (["turn_left 1e3 ;"], "malformed"),
    (["", ""], "empty plan"),
])
def test_garbage_never_reaches_the_backend(texts, reason):
    sim = Sim()
    for seq, text in enumerate(texts):
        sim.chunk(3, seq, text, final=seq == len(texts) - 1)
        sim.run(0.5)
    assert "command" not in sim.backend.kinds()
    assert sim.statuses() == [(3, PlanStatus.REJECTED)]
    assert reason in sim.ctrl.events[0].detail
    assert any(i.level is Level.ERROR and reason in i.message for i in sim.ctrl.incidents)


def test_a_bad_step_mid_plan_stops_at_once():
    sim = Sim()
    sim.chunk(4, 0, "forward 2 ; ")
    sim.run(1.0)
    sim.backend.calls.clear()
    sim.chunk(4, 1, "fly")  # dead prefix: rejected before its terminator
    assert sim.backend.kinds() == ["stop"] and sim.backend.calls[0][0] == sim.now
    assert sim.statuses()[-1] == (4, PlanStatus.REJECTED)
    assert not any(c.moving for c in sim.run(1.0))
    sim.chunk(4, 2, " ; forward 1", final=True)  # the rest of a rejected plan is ignored
    assert not any(c.moving for c in sim.run(1.0))


def test_clamped_values_are_reported():
    sim = Sim(action=ActionLimits(max_distance_m=0.5, clamp=True))
    sim.chunk(5, 0, "forward 2", final=True)
    commands = sim.run(3.0)
    assert integrate(commands, "vx") == pytest.approx(0.5)
    assert any(i.level is Level.WARN and "clamped" in i.message for i in sim.ctrl.incidents)


def test_a_plan_on_a_too_old_frame_is_not_executed():
    sim = Sim(max_frame_age_at_start_s=1.0)
    sim.chunk(6, 0, "forward 1 ;", age=1.5)
    assert not any(c.moving for c in sim.run(1.0))
    assert sim.statuses() == [(6, PlanStatus.REJECTED)]
    assert "frame too old (1.50 s > 1.00 s)" in sim.ctrl.events[0].detail
    # Fresh when it arrived, but its first step was verified too late:
    sim.chunk(8, 0, "forward", age=0.5)
    sim.run(0.6)
    sim.chunk(8, 1, " 1 ;")
    assert not any(c.moving for c in sim.run(1.0))
    assert sim.statuses()[-1] == (8, PlanStatus.REJECTED)


def test_lost_duplicate_and_late_chunks():
    sim = Sim()
    sim.chunk(9, 0, "forward 1 ")
    sim.chunk(9, 0, "forward 1 ")  # duplicate: ignored
    sim.chunk(9, 1, "; ")
    assert sim.run(PERIOD)[0].moving
    sim.chunk(9, 3, "stop ;")      # chunk 2 lost: the text is unknown, stop
    assert sim.statuses()[-1] == (9, PlanStatus.REJECTED) and "lost chunks 2..2" in \
        sim.ctrl.events[-1].detail
    sim.chunk(9, 2, "back 1 ;")    # late chunk of an ended plan: ignored
    sim.chunk(10, 4, "forward 1 ;")  # a plan whose start was lost
    assert not any(c.moving for c in sim.run(1.0))
    assert sim.statuses()[-1] == (10, PlanStatus.REJECTED)




def test_a_new_request_preempts_the_old_plan_cleanly():
    sim = Sim()
    sim.chunk(11, 0, "forward 2 ;")
    sim.run(1.0)
    sim.backend.calls.clear()
    sim.chunk(12, 0, "turn_left 4")
    assert sim.backend.kinds() == ["stop"]  # old motion stops at once
    assert sim.statuses() == [(11, PlanStatus.STARTED), (11, PlanStatus.PREEMPTED)]
    assert sim.ctrl.events[-1].detail == "preempted by request 12"
    sim.chunk(12, 1, "5", final=True)
    commands = sim.run(3.0)
    assert integrate(commands, "vx") == 0.0
    assert integrate(commands, "vyaw") == pytest.approx(math.radians(45))
    assert sim.statuses()[-2:] == [(12, PlanStatus.STARTED), (12, PlanStatus.FINISHED)]
    sim.chunk(11, 1, "forward 1", final=True)  # the preempted plan stays ended
    assert not any(c.moving for c in sim.run(1.0))


def test_estop_stops_at_once_and_holds_until_released():
    sim = Sim()
    sim.ctrl.on_estop(True, sim.now)
    assert sim.backend.kinds() == ["stop"]  # acted on even when idle
    sim.ctrl.on_estop(False, sim.now)
    sim.chunk(13, 0, "forward 2 ;")
    sim.run(0.5)
    sim.backend.calls.clear()
    sim.ctrl.on_estop(True, sim.now)
    assert sim.backend.kinds() == ["stop"] and sim.backend.calls[0][0] == sim.now
    assert sim.statuses()[-1] == (13, PlanStatus.PREEMPTED)
    sim.chunk(14, 0, "forward 1 ;")  # ignored while engaged
    assert not any(c.moving for c in sim.run(1.0))
    assert sim.statuses()[-1] == (14, PlanStatus.REJECTED)
    sim.ctrl.on_estop(False, sim.now)
    sim.chunk(14, 1, " forward 1", final=True)  # the refused plan does not come back
    assert not any(c.moving for c in sim.run(0.5))
    sim.chunk(15, 0, "forward 1", final=True)  # a new plan after release runs
    assert any(c.moving for c in sim.run(0.5))


def test_link_failure_stops_and_refuses_plans_until_restored():
    sim = Sim()
    sim.chunk(16, 0, "turn_right 90 ;")
    sim.run(0.5)
    sim.backend.calls.clear()
    sim.ctrl.on_link(True, sim.now)
    assert sim.backend.kinds() == ["stop"]
    assert sim.statuses()[-1] == (16, PlanStatus.PREEMPTED)
    sim.chunk(17, 0, "forward 1 ;")
    assert not any(c.moving for c in sim.run(0.5))
    sim.ctrl.on_link(False, sim.now)
    sim.chunk(18, 0, "forward 1 ;")
    assert any(c.moving for c in sim.run(0.5))
    assert [h.name for h in sim.ctrl.health(sim.now)] == ["safety", "plan"]


def test_obstacle_stops_forward_motion_but_not_turns():
    sim = Sim(obstacle_stop_m=0.4)
    sim.chunk(19, 0, "turn_left 30 ; forward 2", final=True)
    sim.ctrl.on_range(0.3, sim.now)
    turn = sim.run(0.6)
    assert any(c.vyaw > 0 for c in turn)
    sim.ctrl.on_range(0.3, sim.now)
    rest = sim.run(1.0)
    assert not any(c.vx > 0 for c in rest)   # the forward step is vetoed
    assert sim.statuses()[-1] == (19, PlanStatus.PREEMPTED)
    assert "obstacle 0.30 m ahead" in sim.ctrl.events[-1].detail
    # Mid-step: a reading closer than the stop distance stops at once.
    sim.chunk(20, 0, "forward 2", final=True)
    sim.ctrl.on_range(2.0, sim.now)
    sim.run(1.0)
    sim.backend.calls.clear()
    sim.ctrl.on_range(0.35, sim.now)
    assert sim.backend.kinds() == ["stop"]


def test_backend_errors_become_incidents():
    sim = Sim()
    sim.backend.errors.append("StopMove (1003) returned 3102")
    sim.run(PERIOD)
    assert any("StopMove (1003) returned 3102" in i.message and i.level is Level.ERROR
               for i in sim.ctrl.incidents)


def test_twist_backend_publishes_commands_and_zero():
    sent = []
    backend = TwistBackend(lambda vx, vy, vyaw: sent.append((vx, vy, vyaw)))
    backend.command(Command(vx=0.2, vyaw=-0.1))
    backend.stop()
    assert sent == [(0.2, 0.0, -0.1), (0.0, 0.0, 0.0)]


def test_motion_stops_before_a_posture_change():
    sim = Sim()
    sim.chunk(21, 0, "forward 0.5 ; sit", final=True)
    sim.run(3.0)
    kinds = sim.backend.kinds()
    assert kinds[kinds.index("stop"):] == ["stop", "posture"]
    assert sim.backend.calls[-1][2] == "sit"
