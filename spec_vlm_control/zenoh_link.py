"""The edge-cloud link across sites: protocol messages as serialized CDR over zenoh.

Pure (no ROS): key expressions, the zenoh session configuration with its security check,
and a delay line that plays the link emulator (core/link.py) on real time. The bridge node
feeds it the raw bytes of ROS messages and publishes what comes out, never re-encoding.

Key expressions: spec_vlm/<robot_id>/up/<topic> (edge -> cloud) and
spec_vlm/<robot_id>/down/<topic> (cloud -> edge), <topic> being the last part of the ROS
topic name (request, draft, cancel, verdict, committed, error).
"""
from __future__ import annotations

import heapq
import ipaddress
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import zenoh

from .core.link import LinkEmulator

ROOT = "spec_vlm"


def key(robot_id: str, direction: str, topic: str) -> str:
    if not robot_id or any(c in robot_id for c in "/*$?#"):
        raise ValueError(f"robot_id {robot_id!r} cannot be part of a key expression")
    return f"{ROOT}/{robot_id}/{direction}/{topic.rsplit('/', 1)[-1]}"


def parse_key(key_expr: str) -> tuple[str, str, str]:
    """(robot_id, direction, topic) of a key expression made by `key`."""
    root, robot_id, direction, topic = str(key_expr).split("/")
    if root != ROOT:
        raise ValueError(f"not a spec_vlm key: {key_expr}")
    return robot_id, direction, topic


class InsecureEndpoint(ValueError):
    """A non-loopback endpoint without TLS, refused unless explicitly allowed."""


def is_loopback(endpoint: str) -> bool:
    """True for endpoints such as tcp/127.0.0.1:7447 or udp/[::1]:7447 or tcp/localhost:7447."""
    address = endpoint.split("/", 1)[-1].split("#", 1)[0]
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoints(endpoints: list[str], allow_insecure: bool) -> None:
    for endpoint in endpoints:
        if endpoint.startswith(("tls/", "quic/")) or is_loopback(endpoint):
            continue
        if not allow_insecure:
            raise InsecureEndpoint(
                f"refusing {endpoint}: it leaves this machine without TLS. Use a tls/ endpoint "
                "with certificates, or set allow_insecure:=true for a trusted network.")


@dataclass
class LinkSettings:
    mode: str = "peer"                       # peer | client
    connect: list[str] = field(default_factory=list)
    listen: list[str] = field(default_factory=list)
    allow_insecure: bool = False
    tls_root_ca: str = ""                    # PEM file of the CA that signs the peer
    tls_certificate: str = ""                # our certificate (mutual TLS), PEM
    tls_private_key: str = ""
    user: str = ""
    password_file: str = ""                  # file holding the password (never a parameter)

    def zenoh_config(self) -> zenoh.Config:
        if self.mode not in ("peer", "client"):
            raise ValueError(f"mode must be 'peer' or 'client', not {self.mode!r}")
        if self.mode == "client" and not self.connect:
            raise ValueError("client mode needs at least one connect endpoint (the router)")
        check_endpoints(self.connect + self.listen, self.allow_insecure)
        config = zenoh.Config()
        settings = {"mode": self.mode, "connect/endpoints": self.connect,
                    "listen/endpoints": self.listen,
                    "scouting/multicast/enabled": False,
                    "scouting/gossip/enabled": False}
        tls = {"root_ca_certificate": self.tls_root_ca,
               "connect_certificate": self.tls_certificate,
               "connect_private_key": self.tls_private_key,
               "listen_certificate": self.tls_certificate,
               "listen_private_key": self.tls_private_key}
        for name, value in tls.items():
            if value:
                settings[f"transport/link/tls/{name}"] = value
        if self.tls_certificate:
            settings["transport/link/tls/enable_mtls"] = True
        if self.user:
            with open(self.password_file) as secret:
                password = secret.read().strip()
            settings["transport/auth/usrpwd/user"] = self.user
            settings["transport/auth/usrpwd/password"] = password
        for path, value in settings.items():
            config.insert_json5(path, json.dumps(value))
        return config


class DelayLine:
    """Delivers payloads at the times a link model gives (loss, latency, jitter, bandwidth),
    on a thread of its own, so emulating a WAN never blocks the caller."""

    def __init__(self, link: Optional[LinkEmulator], deliver: Callable[[object], None]):
        self.link = link
        self.deliver = deliver
        self._queue: list = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        if link is not None:
            self._thread.start()

    def send(self, payload) -> None:
        if self.link is None:
            self.deliver(payload)
            return
        now = time.monotonic()
        with self._wake:
            for arrival in self.link.transmit(payload, now):
                heapq.heappush(self._queue, (arrival, next(self._order), payload))
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                if not self._queue:
                    self._wake.wait()
                    continue
                delay = self._queue[0][0] - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                payload = heapq.heappop(self._queue)[2]
                self._wake.release()
                try:
                    self.deliver(payload)
                finally:
                    self._wake.acquire()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)
