"""The edge-cloud link across sites: protocol messages as serialized CDR over zenoh.

Pure (no ROS): key expressions, the zenoh session configuration with its security checks
and access-control rules (docs/security.md), and a delay line that plays the link emulator (core/link.py) on real time. The bridge node
feeds it the raw bytes of ROS messages and publishes what comes out, never re-encoding.

Key expressions: spec_vlm/<robot_id>/up/<topic> (edge -> cloud) and
spec_vlm/<robot_id>/down/<topic> (cloud -> edge), <topic> being the last part of the ROS
topic name (request, draft, cancel, verdict, committed, error). Behind a zenoh router serving
several cloud replicas, keys name the replica both ways:
spec_vlm/<replica>/<robot_id>/{up,down}/<topic> (docs/scaleout.md), so that the router's
access control can bind each replica to its own keys.
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
from .replicas import TOKENS, token_key

ROOT = "spec_vlm"


def key(robot_id: str, direction: str, topic: str, replica: str = "") -> str:
    """With `replica` (a fleet's uplink, docs/scaleout.md): spec_vlm/<replica>/<robot_id>/..."""
    if not robot_id or any(c in robot_id for c in "/*$?#"):
        raise ValueError(f"robot_id {robot_id!r} cannot be part of a key expression")
    return f"{ROOT}/{replica + '/' if replica else ''}{robot_id}/{direction}/" \
        f"{topic.rsplit('/', 1)[-1]}"


def parse_key(key_expr: str) -> tuple[str, str, str]:
    """(robot_id, direction, topic) of a key expression made by `key`, with or without a
    replica (a replica's bridge subscribes to its own keys only)."""
    root, *_, robot_id, direction, topic = parts = str(key_expr).split("/")
    if root != ROOT or len(parts) not in (4, 5):
        raise ValueError(f"not a spec_vlm key: {key_expr}")
    return robot_id, direction, topic


def key_replica(key_expr: str) -> str:
    """The replica a fleet's key names ('' in one cloud's keys)."""
    parts = str(key_expr).split("/")
    return parts[1] if len(parts) == 5 else ""


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


def tls_endpoints(endpoints: list[str]) -> bool:
    return any(endpoint.startswith(("tls/", "quic/")) for endpoint in endpoints)


def check_credentials(path: str) -> None:
    """A zenoh credentials dictionary holds one `user:password` a line; checked here so that
    a malformed file is one clear line at startup, not a zenoh error."""
    users = 0
    with open(path) as dictionary:
        for number, line in enumerate(dictionary, 1):
            if not line.strip():
                continue
            user, colon, password = line.strip().partition(":")
            if not colon or not user.strip() or not password.strip():
                raise ValueError(f"{path} line {number}: expected user:password")
            users += 1
    if not users:
        raise ValueError(f"{path} holds no user:password line")


def access_control(robots: list[str], usernames: bool, cert_common_names: bool,
                   replicas: list[str] = ()) -> dict:
    """Zenoh access-control rules for the session the robots connect to, default deny. Each
    robot and replica is known by its zenoh user name or its certificate's common name (equal
    to its robot_id or replica_id).

    One cloud (no `replicas`, the cloud bridge's session): each robot may put only under its
    own `up` keys and subscribe only to its own `down` keys, so only the cloud sends `down`
    messages to a robot. A fleet (`replicas`, the router's session, docs/scaleout.md): each
    robot may put only its own uplink to a listed replica and receive only its own downlink
    and the replicas' tokens; each replica may receive only the uplink keyed to it, put only
    the downlink keyed to it (of listed robots), and hold only its own token."""
    if not (usernames or cert_common_names):
        raise ValueError("access control needs robots to authenticate: set credentials_file "
                         "(user/password) or mutual TLS (certificate common names)")
    if set(robots) & set(replicas):
        raise ValueError(f"ids {sorted(set(robots) & set(replicas))} name both a robot and "
                         "a replica")
    for name in replicas:
        token_key(name)                           # ids must be plain key chunks (robots: key)
    tokens = f"{TOKENS}/*"
    # A replica's bridge subscribes to every robot's uplink keyed to it; which robot may put
    # there is the robots' rules.
    replica_uplinks = {replica: f"{ROOT}/{replica}/*/up/*" for replica in replicas}
    members = {}                                  # id -> {rule: (message, flow, key_exprs)}
    for robot in robots:
        uplink = [key(robot, "up", "*", replica) for replica in replicas or [""]]
        downlink = [key(robot, "down", "*", "*" if replicas else "")]
        members[robot] = {"up": ("put", "ingress", uplink),
                          "up-subscriber": ("declare_subscriber", "egress",
                                            list(replica_uplinks.values()) or uplink),
                          "down": ("put", "egress", downlink),
                          "down-subscriber": ("declare_subscriber", "ingress", downlink)}
        if replicas:
            members[robot].update({
                "token-subscriber": ("declare_liveliness_subscriber", "ingress", [tokens]),
                "token-query": ("liveliness_query", "ingress", [tokens]),
                "token-reply": ("reply", "egress", [tokens]),
                "tokens": ("liveliness_token", "egress", [tokens])})
    for replica in replicas:
        uplink = [replica_uplinks[replica]]
        members[replica] = {"up": ("put", "egress", uplink),
                            "up-subscriber": ("declare_subscriber", "ingress", uplink),
                            "down": ("put", "ingress",
                                     [key(robot, "down", "*", replica) for robot in robots]),
                            "down-subscriber": ("declare_subscriber", "egress",
                                                [key(robot, "down", "*", "*") for robot in robots]),
                            "token": ("liveliness_token", "ingress", [token_key(replica)])}
    rules, subjects, policies = [], [], []
    for member, allowed in members.items():
        rules += [{"id": f"{member}-{rule}", "messages": [message], "flows": [flow],
                   "permission": "allow", "key_exprs": key_exprs}
                  for rule, (message, flow, key_exprs) in allowed.items()]
        identities = ([{"id": f"{member}-user", "usernames": [member]}] if usernames else []) + (
            [{"id": f"{member}-cert", "cert_common_names": [member]}] if cert_common_names
            else [])
        subjects += identities
        policies.append({"id": member, "rules": [f"{member}-{rule}" for rule in allowed],
                         "subjects": [s["id"] for s in identities]})
    return {"enabled": True, "default_permission": "deny", "rules": rules,
            "subjects": subjects, "policies": policies}


@dataclass
class LinkSettings:
    """One side of the link. TLS: the listening side presents `tls_certificate`; the
    connecting side checks it against `tls_root_ca`. With `tls_mutual` the connecting side
    presents its certificate too and the listening side checks it against its `tls_root_ca`.
    User/password: the connecting side sends `user` and the password read from
    `password_file`; the listening side checks them against `credentials_file`."""

    mode: str = "peer"                       # peer | client | router (nodes/router.py)
    connect: list[str] = field(default_factory=list)
    listen: list[str] = field(default_factory=list)
    allow_insecure: bool = False
    tls_root_ca: str = ""                    # PEM file of the CA that signs the peer
    tls_certificate: str = ""                # this side's certificate, PEM
    tls_private_key: str = ""
    tls_mutual: bool = True                  # both sides present certificates
    user: str = ""
    password_file: str = ""                  # file holding the password (never a parameter)
    credentials_file: str = ""               # user:password lines the listening side accepts
    robots: list[str] = field(default_factory=list)   # access control: who may use which keys
    replicas: list[str] = field(default_factory=list)  # a fleet's router: its replicas' ids
    lease_ms: int = 10000                    # zenoh's default: others drop this side when
                                             # they hear nothing from it for this long

    def zenoh_config(self) -> zenoh.Config:
        if self.mode not in ("peer", "client", "router"):
            raise ValueError(f"mode must be 'peer', 'client' or 'router', not {self.mode!r}")
        if self.mode == "client" and not self.connect:
            raise ValueError("client mode needs at least one connect endpoint (the router)")
        check_endpoints(self.connect + self.listen, self.allow_insecure)
        settings = {"mode": self.mode, "connect/endpoints": self.connect,
                    "listen/endpoints": self.listen,
                    "scouting/multicast/enabled": False,
                    "scouting/gossip/enabled": False,
                    "transport/link/tx/lease": self.lease_ms}
        settings.update(self._tls())
        if self.user:
            if not self.password_file:
                raise ValueError(f"user {self.user!r} needs password_file")
            with open(self.password_file) as secret:
                password = secret.read().strip()
            if not password:
                raise ValueError(f"password_file {self.password_file} is empty")
            settings["transport/auth/usrpwd/user"] = self.user
            settings["transport/auth/usrpwd/password"] = password
        if self.credentials_file:
            check_credentials(self.credentials_file)
            settings["transport/auth/usrpwd/dictionary_file"] = self.credentials_file
        if self.robots:
            settings["access_control"] = access_control(
                self.robots, usernames=bool(self.credentials_file), replicas=self.replicas,
                cert_common_names=self.tls_mutual and tls_endpoints(self.listen))
        config = zenoh.Config()
        for path, value in settings.items():
            config.insert_json5(path, json.dumps(value))
        return config

    def _tls(self) -> dict:
        """zenoh's TLS settings, after checking that each side has the files its role needs."""
        listens, connects = tls_endpoints(self.listen), tls_endpoints(self.connect)
        needed = {"tls_root_ca": connects or (listens and self.tls_mutual),
                  "tls_certificate": listens or (connects and self.tls_mutual)}
        needed["tls_private_key"] = needed["tls_certificate"]
        for name, need in needed.items():
            if need and not getattr(self, name):
                raise ValueError(f"{name} must be set for a tls/ endpoint"
                                 + (" with tls_mutual" if self.tls_mutual else ""))
            if getattr(self, name):
                with open(getattr(self, name)):
                    pass                        # a missing file: one clear OSError line
        if not (listens or connects):
            return {}
        tls = {"root_ca_certificate": self.tls_root_ca, "enable_mtls": self.tls_mutual}
        if listens:
            tls.update(listen_certificate=self.tls_certificate,
                       listen_private_key=self.tls_private_key)
        if connects and self.tls_mutual:
            tls.update(connect_certificate=self.tls_certificate,
                       connect_private_key=self.tls_private_key)
        return {f"transport/link/tls/{name}": value for name, value in tls.items() if value != ""}


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
