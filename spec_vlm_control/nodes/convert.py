"""Core protocol dataclasses <-> generated ROS messages, field for field.

The dataclasses in core/protocol.py and core/metrics.py carry the same field names as
msg/*.msg, so conversion is generic. The only differences are ROS-shaped: a request's image
travels as sensor_msgs/CompressedImage, and a capture time (`stamp`, seconds) as
std_msgs/Header.stamp.
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


def stamp_to_time(stamp: float) -> Time:
    sec = int(stamp)
    return Time(sec=sec, nanosec=int(round((stamp - sec) * 1e9)) % 1_000_000_000)


def time_to_stamp(t: Time) -> float:
    return t.sec + t.nanosec * 1e-9


def stamp_ns(t: Time) -> int:
    """A header stamp as integer nanoseconds (negative when `sec` is)."""
    return t.sec * 1_000_000_000 + t.nanosec


def to_ros(obj):
    """A core dataclass as its ROS message."""
    msg = getattr(ros, type(obj).__name__)()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name == "stamp":
            msg.header.stamp = stamp_to_time(value)
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
        if f.name == "stamp":
            values[f.name] = time_to_stamp(msg.header.stamp)
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
