"""The installed controller node against hostile messages and parameters (separate processes
on loopback): bad stamps, repeated plans and megabyte chunks are answered and the same process
keeps serving; bad parameters end it at startup with one line."""
import statistics
import subprocess
import time

import pytest

from harness import EXECUTABLES, ros_env
from spec_vlm_control.msg import PlanStatus, VerifiedTokens
from test_controller_node import start_controller

MB = 2**20


def publish(probe, seq, text, final, stamp=None, request_id=None):
    """One VerifiedTokens; `stamp` (sec, nanosec) defaults to now. Returns the request id."""
    if request_id is None:
        probe.request_id += 1
        request_id = probe.request_id
    msg = VerifiedTokens(request_id=request_id, seq=seq, text_delta=text, final=final)
    if stamp is None:
        msg.header.stamp = probe.graph.node.get_clock().now().to_msg()
    else:
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    probe.tokens.publish(msg)
    return request_id


def rejection(probe, request_id):
    with probe.lock:
        return next(d for r, s, d in probe.statuses
                    if r == request_id and s == PlanStatus.REJECTED)


@pytest.fixture
def controller(ros_graph, config_dir):
    return start_controller(ros_graph, config_dir, max_frame_age_at_start_s=2.5)


def test_bad_stamps_are_rejected_and_repeats_ignored_by_the_same_process(controller):
    process, probe = controller
    now = probe.graph.node.get_clock().now().seconds_nanoseconds()
    cases = {(-1, 0): "invalid frame stamp", (now[0], 10**9): "invalid frame stamp",
             (now[0] + 5, now[1]): "in the future", (now[0] + 365 * 86400, 0): "in the future",
             (2**31 - 1, 0): "in the future", (0, 0): "frame too old"}
    t0 = time.monotonic()
    latencies = {}
    for stamp, reason in cases.items():
        sent = time.monotonic()
        request = publish(probe, 0, "forward 1 ;", True, stamp)
        probe.wait_status(request, PlanStatus.REJECTED, timeout=5.0)
        latencies[stamp] = time.monotonic() - sent
        assert reason in rejection(probe, request), (stamp, rejection(probe, request))
    print(f"\nbad stamps answered in {max(latencies.values()) * 1000:.1f} ms at most")
    assert not any(t[1:] != (0.0, 0.0, 0.0) for t in probe.twists_since(t0))
    assert process.alive()

    good = publish(probe, 0, "forward 0.2", True)
    probe.wait_status(good, PlanStatus.FINISHED)
    t1 = time.monotonic()
    publish(probe, 0, "forward 0.2", True, request_id=good)  # the same plan again
    probe.wait_diagnostic(f"request {good} has ended")
    time.sleep(0.3)
    assert not any(t[1:] != (0.0, 0.0, 0.0) for t in probe.twists_since(t1))
    assert probe.status_of(good) == [PlanStatus.STARTED, PlanStatus.FINISHED]
    assert process.alive() and process.stop() == 0  # the same process, never restarted


def test_megabyte_chunks_neither_stall_the_loop_nor_reach_the_log(controller):
    process, probe = controller
    ended = [publish(probe, 0, "sprint", True) for _ in range(3)]
    for request in ended:
        probe.wait_status(request, PlanStatus.REJECTED)
    t0 = time.monotonic()
    running = publish(probe, 0, "forward 1 ;", True)
    probe.wait_moving(t0)
    floods = 0
    while time.monotonic() - t0 < 2.0:  # replays of ended plans, 1 MB of whitespace each
        publish(probe, floods % 2, " " * MB, False, request_id=ended[floods % 3])
        floods += 1
        time.sleep(0.05)
    probe.wait_status(running, PlanStatus.FINISHED)
    moving = [t for t in probe.twists_since(t0) if t[1:] != (0.0, 0.0, 0.0)]
    gaps = [b[0] - a[0] for a, b in zip(moving, moving[1:])]
    print(f"\ncmd_vel under {floods} MB of replayed chunks: gap median "
          f"{statistics.median(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms")
    assert probe.status_of(running) == [PlanStatus.STARTED, PlanStatus.FINISHED]
    assert max(gaps) < 0.15  # a command lapses (watchdog) after 3/4 of 0.2 s

    t1 = time.monotonic()
    flooded = publish(probe, 0, "forward 1 ;", False)
    publish(probe, 1, " " * MB, False, request_id=flooded)
    probe.wait_status(flooded, PlanStatus.REJECTED)
    assert rejection(probe, flooded) == "plan text longer than 256 characters"
    assert probe.first_zero_after(t1) < 1.0
    with probe.lock:
        assert max(len(m) for _, _, m in probe.diagnostics) < 200
    assert process.alive()
    assert len(process.log()) < 20_000


@pytest.mark.parametrize("name, value, allowed", [
    ("control_rate_hz", "0.0", "must be > 0 and <= 1000"),
    ("control_rate_hz", "-5.0", "must be > 0 and <= 1000"),
    ("watchdog_timeout_s", "0.0", "must be > 0 and <= 10"),
    ("watchdog_timeout_s", "0.05", "must be > 0.0666667"),
    ("max_plan_chars", "0", "must be >= 1 and <= 65536"),
    ("backend", "tracks", "must be one of 'twist', 'unitree'"),
])
def test_a_bad_parameter_ends_the_node_with_one_line(domain_id, name, value, allowed):
    result = subprocess.run([str(EXECUTABLES / "controller"), "--ros-args", "-p",
                             f"{name}:={value}"], env=ros_env(domain_id), capture_output=True,
                            text=True, timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"parameter '{name}'" in lines[0] and allowed in lines[0], lines[0]
