"""Backend `unitree`: the worker queue (in process) and the controller node against a stand-in
Go2 that speaks the SDK's own DDS request/response topics on loopback (separate processes)."""
import json
import math
import statistics
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from std_msgs.msg import Bool
from test_controller_node import start_controller

from spec_vlm_control.control.motion import Command
from spec_vlm_control.control.unitree import UnitreeBackend
from spec_vlm_control.msg import PlanStatus

MOVE, STOP_MOVE, STAND_UP, BALANCE_STAND, SIT = 1008, 1003, 1004, 1002, 1009
RATE_HZ = 20.0


# -- the worker queue, with a client that blocks like the SDK's -----------------------------


class BlockingClient:
    """SportClient methods that block until released, recording the calls."""

    def __init__(self):
        self.calls = []
        self.release = threading.Event()
        self.code = 0

    def _call(self, name, *args):
        self.calls.append((name, args))
        self.release.wait(5.0)
        return self.code

    def __getattr__(self, name):
        return lambda *args: self._call(name, *args)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_calls_never_block_the_caller_and_only_the_latest_move_waits():
    client = BlockingClient()
    backend = UnitreeBackend(client)
    try:
        t0 = time.monotonic()
        backend.posture("stand")                   # StandUp blocks the worker...
        for i in range(1, 6):
            backend.command(Command(vx=0.1 * i))   # ...while moves pile up
        backend.posture("sit")
        backend.command(Command(vyaw=0.5))
        assert time.monotonic() - t0 < 0.05       # the caller never waited
        wait_until(lambda: len(client.calls) == 1)
        client.release.set()
        wait_until(lambda: len(client.calls) == 4)
        time.sleep(0.05)
        assert client.calls == [("StandUp", ()), ("BalanceStand", ()), ("Sit", ()),
                                ("Move", (0.0, 0.0, 0.5))]  # stale velocities never went out
    finally:
        client.release.set()
        backend.close()


def test_a_stop_discards_pending_moves_and_errors_are_reported_once_per_second():
    client = BlockingClient()
    client.code = 3104
    backend = UnitreeBackend(client)
    try:
        backend.posture("sit")
        wait_until(lambda: len(client.calls) == 1)
        backend.command(Command(vx=0.3))
        backend.stop()
        backend.stop()
        client.release.set()
        wait_until(lambda: len(client.calls) == 2)
        backend.stop()
        wait_until(lambda: len(client.calls) == 3)
        assert [name for name, _ in client.calls] == ["Sit", "StopMove", "StopMove"]
        wait_until(lambda: not backend._queue)
        assert backend.drain_errors() == ["Sit (1009) returned 3104",
                                          "StopMove (1003) returned 3104"]
    finally:
        backend.close()


# -- the node against a stand-in robot ------------------------------------------------------

STANDIN = textwrap.dedent("""
    import json, sys, time
    from unitree_sdk2py.core.channel import (ChannelFactoryInitialize, ChannelPublisher,
                                             ChannelSubscriber)
    from unitree_sdk2py.idl.unitree_api.msg.dds_ import (Request_, Response_, ResponseHeader_,
                                                         ResponseStatus_)
    domain, mode, code = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ChannelFactoryInitialize(domain, "lo")
    responses = ChannelPublisher("rt/api/sport/response", Response_)
    responses.Init()

    def on_request(req):
        h = req.header
        print(json.dumps({"t": time.monotonic(), "api_id": h.identity.api_id,
                          "parameter": req.parameter, "noreply": h.policy.noreply}), flush=True)
        if h.policy.noreply or mode == "silent":
            return
        status = ResponseStatus_(code=0 if mode == "ok" else code)
        responses.Write(Response_(header=ResponseHeader_(identity=h.identity, status=status),
                                  data="", binary=[]))

    requests = ChannelSubscriber("rt/api/sport/request", Request_)
    requests.Init(on_request, 10)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        time.sleep(1)
""")


class StandInRobot:
    """A Go2 sport service on loopback: records every request, answers per `mode`
    ('ok': code 0, 'error': `code`, 'silent': never)."""

    def __init__(self, domain, mode, code=0):
        self.requests = []
        self.popen = subprocess.Popen([sys.executable, "-c", STANDIN, str(domain), mode,
                                       str(code)], stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(20.0), "the stand-in robot did not start"

    def _read(self):
        for line in self.popen.stdout:
            record = json.loads(line)
            if record.get("ready"):
                self.ready.set()
            else:
                self.requests.append(record)

    def api_ids(self, since=0.0):
        """Api ids received after `since`, consecutive repeats collapsed."""
        ids = [r["api_id"] for r in self.requests if r["t"] >= since]
        return [a for i, a in enumerate(ids) if i == 0 or ids[i - 1] != a]

    def moves(self, since=0.0):
        return [r for r in self.requests if r["api_id"] == MOVE and r["t"] >= since]

    def close(self):
        self.popen.kill()
        self.popen.wait()


@pytest.fixture
def robot_factory(ros_graph):
    robots = []

    def start(mode, code=0):
        robots.append(StandInRobot(ros_graph.cyclone_domain, mode, code))
        return robots[-1]

    yield start
    for robot in robots:
        robot.close()


def start_unitree_controller(ros_graph, config_dir, **params):
    return start_controller(ros_graph, config_dir, backend="unitree", unitree_interface="lo",
                            unitree_domain_id=ros_graph.cyclone_domain, posture_s=0.5,
                            **params)[1]


def test_plan_reaches_the_robot_as_sport_api_calls(ros_graph, config_dir, robot_factory):
    robot = robot_factory("ok")
    probe = start_unitree_controller(ros_graph, config_dir)
    t0 = time.monotonic()
    request = probe.send_plan(["stand ; forward 0.5 ; turn_left 30 ; sit"])
    probe.wait_status(request, PlanStatus.FINISHED)
    ros_graph.wait_for(lambda: SIT in robot.api_ids(t0), 5.0, "Sit at the robot")
    assert robot.api_ids(t0) == [STAND_UP, BALANCE_STAND, MOVE, STOP_MOVE, SIT]
    moves = robot.moves(t0)
    params = [json.loads(m["parameter"]) for m in moves]
    assert all(set(p) == {"x", "y", "z"} and m["noreply"] for p, m in zip(params, moves))
    forward = [p for p in params if p["x"] > 0]
    turn = [p for p in params if p["z"] > 0]
    assert forward and turn and len(forward) + len(turn) == len(params)
    assert all(p["y"] == 0 and p["z"] == 0 and p["x"] <= 0.4 + 1e-9 for p in forward)
    assert all(p["x"] == 0 and p["y"] == 0 and p["z"] <= math.radians(60) + 1e-9 for p in turn)
    assert params.index(turn[0]) == len(forward)  # forward first, then the turn
    intervals = [b["t"] - a["t"] for a, b in zip(moves, moves[1:])]
    rate = 1.0 / statistics.median(intervals)
    print(f"\nunitree Move re-send rate median {rate:.1f} Hz (nominal {RATE_HZ:g}), "
          f"{len(moves)} moves")
    assert abs(rate - RATE_HZ) <= 0.25 * RATE_HZ


def test_robot_error_codes_surface_on_diagnostics(ros_graph, config_dir, robot_factory):
    robot_factory("error", code=3204)
    probe = start_unitree_controller(ros_graph, config_dir)
    request = probe.send_plan(["forward 0.25 ; sit"])
    probe.wait_status(request, PlanStatus.FINISHED)
    probe.wait_diagnostic("StopMove (1003) returned 3204")
    probe.wait_diagnostic("Sit (1009) returned 3204")


def test_a_silent_robot_does_not_delay_the_stop(ros_graph, config_dir, robot_factory):
    robot = robot_factory("silent")
    probe = start_unitree_controller(ros_graph, config_dir, unitree_timeout_s=0.5)
    t_plan = time.monotonic()
    request = probe.send_plan(["stand ; forward 3"])
    # StandUp and BalanceStand each block the worker for the client's timeout...
    probe.wait_diagnostic("StandUp (1004) returned 3104")
    ros_graph.wait_for(lambda: len(robot.moves(t_plan)) >= 5, 10.0, "moves at the robot")
    # ...but once it is free, a stop goes out at once, and the watchdog's timing holds.
    t0 = time.monotonic()
    probe.link.publish(Bool(data=True))
    ros_graph.wait_for(lambda: STOP_MOVE in robot.api_ids(t0), 2.0, "StopMove at the robot")
    latency = next(r["t"] for r in robot.requests if r["t"] >= t0 and r["api_id"] == STOP_MOVE) \
        - t0
    probe.wait_status(request, PlanStatus.PREEMPTED)
    time.sleep(0.3)
    assert not robot.moves(t0 + 0.05), "no Move after the stop"
    probe.wait_diagnostic("StopMove (1003) returned 3104")
    print(f"\nunitree StopMove latency on link failure, silent robot: {latency * 1000:.1f} ms")
    assert latency <= 0.5
