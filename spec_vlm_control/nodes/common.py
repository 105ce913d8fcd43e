"""What every node of the package shares: declared and checked parameters, QoS profiles, a
main loop.

Each node module has a PARAMETERS table (name -> (default, description[, check])); the node
declares exactly these, config/*.yaml sets some of them, and the README documents all of them
(a static test keeps the three in step). A check (`Range`, `OneOf`) states the allowed values;
a value of the wrong type or outside them ends the node at startup with one line naming the
parameter, the value and what is allowed (exit status 1), never with a traceback.
"""
from __future__ import annotations

import math
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from spec_vlm_control.switch_interval import switch_interval_s
from spec_vlm_control.topics import PROTOCOL_DEPTH

PROTOCOL_QOS = QoSProfile(depth=PROTOCOL_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
SENSOR_QOS = qos_profile_sensor_data


class ConfigError(ValueError):
    """A node cannot start with the configuration it was given (a parameter, a file, a
    model): `spin` prints it as one line and exits 1."""


@dataclass(frozen=True)
class Range:
    """Allowed numbers: low <= value <= high (strictly above low when low_open). Applies to
    each element of a list parameter."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False

    def problem(self, value) -> Optional[str]:
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, {self}"
        too_low = self.low is not None and (value <= self.low if self.low_open
                                            else value < self.low)
        too_high = self.high is not None and value > self.high
        return f"must be {self}" if too_low or too_high else None

    def __str__(self) -> str:
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if self.high is None else f"<= {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "any number"


@dataclass(frozen=True)
class OneOf:
    choices: tuple

    def problem(self, value) -> Optional[str]:
        return None if value in self.choices else f"must be {self}"

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


def _typed(name: str, value, default):
    """`value` as the type of `default` (an integer is a fine float); ConfigError otherwise."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list:
        if not isinstance(value, list):
            raise ConfigError(f"parameter '{name}' = {value!r}: must be a list")
        element = type(default[0]) if default else None
        if element is not None:
            return [_typed(name, v, default[0]) for v in value]
        return list(value)
    if type(value) is not kind:
        raise ConfigError(f"parameter '{name}' = {value!r}: must be a {kind.__name__}")
    return value


def check_value(name: str, value, entry: tuple):
    """The value of parameter `name` checked against its PARAMETERS entry."""
    default, check = entry[0], entry[2] if len(entry) > 2 else None
    value = _typed(name, value, default)
    if check is not None:
        for v in value if isinstance(value, list) else [value]:
            problem = check.problem(v)
            if problem:
                raise ConfigError(f"parameter '{name}' = {value!r}: {problem}")
    return value


def declare_parameters(node: Node, table: dict) -> dict:
    """Declare every parameter of `table` with its description; return their checked values.
    Typing is dynamic at declaration so that `20` for a float reaches the check (and is
    accepted) instead of failing inside rclpy with a traceback."""
    values = {}
    for name, entry in table.items():
        default, text = entry[0], entry[1]
        if len(entry) > 2:
            text = f"{text} ({entry[2]})"
        raw = node.declare_parameter(name, default, ParameterDescriptor(
            description=text, dynamic_typing=True)).value
        values[name] = check_value(name, raw, entry)
    return values


EXECUTOR_ENV = "SPEC_VLM_EXECUTOR"


def make_executor(threads: int, default: str = "multi"):
    """rclpy's MultiThreadedExecutor (`multi`), or its EventsExecutor (`events`: callbacks
    dispatched from C++, one thread): `default`, unless SPEC_VLM_EXECUTOR names one.
    `spec-vlm bench-link` compares the two."""
    if os.environ.get(EXECUTOR_ENV, default) == "events":
        from rclpy.experimental import EventsExecutor
        return EventsExecutor()
    return MultiThreadedExecutor(num_threads=threads)


def spin(make_node: Callable[[], Node], args=None, threads: int = 2) -> int:
    """Run one node until Ctrl-C / SIGTERM / shutdown (`spin_nodes` with one node)."""
    return spin_nodes([make_node], args, threads)


def spin_nodes(makers: Sequence[Callable[[], Node]], args=None, threads: int = 2,
               executor: str = "multi") -> int:
    """Run the nodes of one process (one rclpy context, one executor: what they send each
    other is delivered by Fast DDS within the process, no transport) until Ctrl-C / SIGTERM
    / shutdown, then let each close cleanly (its `close()` may still publish, e.g. a final
    stop). A node that cannot be built from its configuration returns 1 after one line on
    stderr. `executor` as `make_executor`'s default, `threads` per node (multi)."""
    # A process started in the background of a non-interactive shell inherits SIGINT as
    # ignored; a node must still stop on it (ros2 launch and the demo stop nodes with it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    nodes: list[Node] = []
    try:
        try:
            sys.setswitchinterval(switch_interval_s())
            for make_node in makers:
                nodes.append(make_node())
        except (ValueError, OSError) as exc:
            # A configuration the node cannot start with (ConfigError, a missing or corrupt
            # model file, a refused endpoint): one line naming the cause, not a traceback.
            print(f"{sys.argv[0].rsplit('/', 1)[-1]}: error: {exc}", file=sys.stderr,
                  flush=True)
            return 1
        dispatcher = make_executor(threads * len(nodes), executor)
        for node in nodes:
            dispatcher.add_node(node)
        # Waking up now and then lets Python run its SIGINT handler: a node with nothing
        # to do (a camera whose odometry stopped) would otherwise sleep through Ctrl-C.
        while rclpy.ok():
            dispatcher.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in reversed(nodes):
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
