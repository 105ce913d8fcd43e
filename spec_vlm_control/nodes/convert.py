"""Core protocol dataclasses <-> generated ROS messages, field for field.

The dataclasses in core/protocol.py and core/metrics.py carry the same field names as
msg/*.msg, so conversion is generic. The only differences are ROS-shaped: a request's image
travels as sensor_msgs/CompressedImage, and a capture time (`stamp_ns`, integer nanoseconds)
as std_msgs/Header.stamp. This is the one place where a stamp changes representation.
"""
from __future__ import annotations

import dataclasses

from builtin_interfaces.msg import Time

import spec_vlm_control.msg as ros
from spec_vlm_control.core import metrics, protocol

CORE_TYPES = {cls.__name__: cls for cls in (
    protocol.DecodingParams, protocol.Handshake, protocol.DecodeRequest, protocol.DraftBlock,
    protocol.Verdict, protocol.CommittedTokens, protocol.Cancel, protocol.DecodeError,
    protocol.VerifiedTokens, protocol.PlanStatus, metrics.RequestStats)}

NS_PER_S = 1_000_000_000
MALFORMED_STAMP_NS = -1   # what a stamp with nanosec >= 1 s becomes: never a capture time


def stamp_ns(t: Time) -> int:
    """A header stamp (or rosgraph_msgs/Clock) as integer nanoseconds: negative when `sec`
    is, MALFORMED_STAMP_NS when `nanosec` is not below one second (a sender's bug that must
    not pass for a valid time)."""
    if not 0 <= t.nanosec < NS_PER_S:
        return MALFORMED_STAMP_NS
    return t.sec * NS_PER_S + t.nanosec


def to_time(stamp_ns: int) -> Time:
    """Integer nanoseconds as a header stamp (nanosec always in [0, 1 s))."""
    sec, nanosec = divmod(stamp_ns, NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def to_ros(obj):
    """A core dataclass as its ROS message."""
    msg = getattr(ros, type(obj).__name__)()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name == "stamp_ns":
            msg.header.stamp = to_time(value)
        elif f.name == "image_data":
            msg.image.data = bytes(value)
        elif f.name == "image_format":
            msg.image.format = value
        elif dataclasses.is_dataclass(value):
            setattr(msg, f.name, to_ros(value))
        else:
            setattr(msg, f.name, value)
    return msg


def from_ros(msg):
    """A ROS message of this package as its core dataclass."""
    cls = CORE_TYPES[type(msg).__name__]
    values = {}
    for f in dataclasses.fields(cls):
        if f.name == "stamp_ns":
            values[f.name] = stamp_ns(msg.header.stamp)
        elif f.name == "image_data":
            values[f.name] = bytes(msg.image.data)
        elif f.name == "image_format":
            values[f.name] = msg.image.format
        else:
            value = getattr(msg, f.name)
            if type(value).__name__ in CORE_TYPES:
                value = from_ros(value)
            elif not isinstance(value, (str, bytes, int, float, bool)):
                value = list(value)          # array.array / numpy arrays of sequences
            values[f.name] = value
    return cls(**values)
