"""Runs recorded as rosbag2 (MCAP by default) with `rosbags`, and read back for replay and audit.

Pure Python, no ROS installation needed: messages are written as CDR bytes (what
`rclpy.serialization.serialize_message` returns) or as `rosbags` message objects. The
package's own types come from msg/*.msg, so a bag holds full definitions and opens in
`ros2 bag`, Foxglove or `rosbags` without this package installed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "spec_vlm_control"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def _msg_dir() -> Path:
    """msg/ beside the source tree, or as installed under share/ by the build."""
    for candidate in (Path(__file__).resolve().parents[1] / "msg",
                      Path(sys.prefix) / "share" / PACKAGE / "msg"):
        if any(candidate.glob("*.msg")):
            return candidate
    raise FileNotFoundError(f"no {PACKAGE} msg/*.msg found beside the package or under "
                            f"{sys.prefix}/share")


@cache
def _package_types() -> dict:
    types: dict = {}
    for path in sorted(_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    return types


def package_typestore(extra_types: Optional[dict] = None) -> Typestore:
    """ROS 2 Kilted's standard types plus this package's messages (and `extra_types`).
    Building one takes ~0.5 s, so the plain store is built once and shared: do not
    register into it."""
    if not extra_types:
        return _plain_typestore()
    store = get_typestore(Stores.ROS2_KILTED)
    store.register({**_package_types(), **extra_types})
    return store


@cache
def _plain_typestore() -> Typestore:
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(_package_types())
    return store


def full_type_name(msgtype: str) -> str:
    """'sensor_msgs/CompressedImage' -> 'sensor_msgs/msg/CompressedImage'."""
    package, _, name = msgtype.rpartition("/")
    return msgtype if package.endswith("/msg") else f"{package}/msg/{name}"


class Recorder:
    """Appends messages to a new bag: `Recorder(path).write(topic, msgtype, message, stamp_ns)`.

    `message`: CDR bytes, or a `rosbags` message object of the typestore. A topic's type is
    fixed by its first message. Use as a context manager, or call close(): the bag's
    metadata is written then.
    """

    def __init__(self, path: str | Path, storage: str = "mcap",
                 typestore: Optional[Typestore] = None):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.typestore = typestore or package_typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections: dict[str, Any] = {}

    def write(self, topic: str, msgtype: str, message: bytes | memoryview | Any,
              stamp_ns: int) -> None:
        msgtype = full_type_name(msgtype)
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise ValueError(f"topic {topic} holds {connection.msgtype}, not {msgtype}")
        if not isinstance(message, (bytes, bytearray, memoryview)):
            message = self.typestore.serialize_cdr(message, msgtype)
        self._writer.write(connection, int(stamp_ns), bytes(message))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    stamp_ns: int   # the bag's receive (log) time
    data: bytes     # CDR, as recorded
    typestore: Typestore

    def decode(self) -> Any:
        return self.typestore.deserialize_cdr(self.data, self.msgtype)


def bag_topics(path: str | Path) -> dict[str, str]:
    """topic -> message type of a bag (.db3 or .mcap directory, or a bare .mcap file)."""
    with Reader(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def read_bag(path: str | Path, topics: Optional[Iterable[str]] = None) -> Iterator[BagMessage]:
    """Messages in log-time order; types the store lacks are taken from the bag itself."""
    wanted = None if topics is None else set(topics)
    with Reader(path) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        store = package_typestore()
        missing = {}
        for c in connections:
            if c.msgtype not in store.fielddefs:
                missing.update(get_types_from_msg(c.msgdef.data, c.msgtype))
        if missing:
            store = package_typestore(missing)
        for connection, stamp, data in reader.messages(connections=connections):
            yield BagMessage(connection.topic, connection.msgtype, stamp, bytes(data), store)
