"""Every protocol dataclass survives the trip through its ROS message and CDR; stamps
change representation (integer nanoseconds <-> header stamp) here and nowhere else."""
import dataclasses
from pathlib import Path

import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message

import spec_vlm_control.msg as ros
from spec_vlm_control.core import metrics, protocol
from spec_vlm_control.core.protocol import RequestIds
from spec_vlm_control.nodes.convert import (CORE_TYPES, MALFORMED_STAMP_NS, NS_PER_S, from_ros,
                                            stamp_ns, to_ros, to_time)

MSG = Path(__file__).parent.parent / "msg"

SAMPLES = [
    protocol.DecodeRequest("go2", 7, "go to the red ball", b"\xff\xd8jpeg", "jpeg",
                           protocol.DecodingParams(protocol.DecodingParams.MODE_PIPELINED, 5, 40,
                                                   0.75, 0.5, 2**40 + 3),
                           protocol.Handshake(1, "tok", "target"), 1234 * NS_PER_S + 5),
    protocol.DraftBlock("go2", 7, 3, 10, 2**64 - 1, [1, 2, 3], [2, 1], [1, 4, 2], [0.5, 0.5, 1.0]),
    protocol.Verdict("go2", 7, 3, protocol.Verdict.STAGE_EARLY, 2, 10, 99, 3, 2, 17, 0.75, True,
                     2**64 - 2),
    protocol.CommittedTokens("go2", 2**64 - 1, 12, [4, 5], 2**63 + 5, True, 9),
    protocol.Cancel("go2", RequestIds(0xFFFFFFFF).next(), "action complete"),
    protocol.DecodeError("go2", 7, protocol.DecodeError.CODE_SESSION_GONE, "cancelled",
                         protocol.new_epoch()),
    protocol.VerifiedTokens(2**40 + 7, 2, [8, 9], "forward 0.5 ;", True,
                            1_700_000_000 * NS_PER_S + 123_456_789),
    protocol.PlanStatus(2**63 + 7, protocol.PlanStatus.REJECTED, "unknown verb"),
    metrics.RequestStats("go2", 7, 4, False, "deadline", 12, 4, 2.0, 4, 3, 1, 0.75, 5, 6, 0.5,
                         0.1, 1.0, 0.2, 0.3, 0.4, 0.1, [0.25, 0.5]),
]


def test_samples_cover_every_core_type():
    assert {type(s).__name__ for s in SAMPLES} == set(CORE_TYPES) - {"DecodingParams", "Handshake"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip_through_cdr(sample):
    msg = to_ros(sample)
    back = from_ros(deserialize_message(serialize_message(msg), type(msg)))
    for f in dataclasses.fields(sample):
        expected, got = getattr(sample, f.name), getattr(back, f.name)
        if isinstance(expected, float) or (isinstance(expected, list) and expected
                                           and isinstance(expected[0], float)):
            assert got == pytest.approx(expected, rel=1e-6), f.name
        else:
            assert got == expected, f.name


def test_core_constants_equal_the_message_constants():
    for name, cls in CORE_TYPES.items():
        constants = {k: v for k, v in vars(cls).items() if k.isupper() and isinstance(v, int)}
        declared = [line.split("#")[0].split()[1].split("=")[0]
                    for line in (MSG / f"{name}.msg").read_text().splitlines()
                    if "=" in line.split("#")[0]]
        assert constants == {k: getattr(getattr(ros, name), k) for k in declared}, name


@pytest.mark.parametrize("ns", [0, 1, NS_PER_S - 1, 1_700_000_000 * NS_PER_S + 999_999_999,
                                2**31 * NS_PER_S - 1, -1, -NS_PER_S, -2**31 * NS_PER_S])
def test_stamps_cross_as_exact_nanoseconds(ns):
    t = to_time(ns)
    assert 0 <= t.nanosec < NS_PER_S and stamp_ns(t) == ns


@pytest.mark.parametrize("sec, nanosec", [(5, NS_PER_S), (5, 2**32 - 1), (2**31 - 1, NS_PER_S)])
def test_a_malformed_stamp_is_never_a_capture_time(sec, nanosec):
    """nanosec >= 1 s would otherwise read as a later, plausible time (the controller
    rejects negative stamps: test_controller_hardening.py)."""
    assert stamp_ns(Time(sec=sec, nanosec=nanosec)) == MALFORMED_STAMP_NS < 0
