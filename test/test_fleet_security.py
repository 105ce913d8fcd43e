"""A fleet's security and hostile input (docs/security.md "A fleet", docs/scaleout.md), on
loopback with real zenoh: the router's access control generated from its robots and replicas
lists (zenoh_link.access_control, as the cloud bridge's), its user/password listener, and the
installed router and bridges fed what a hostile or broken peer sends. A refused message is
shown by *no message crossing* within a bound, after the allowed ones have crossed."""
import os
import subprocess
import time

import pytest
import zenoh

import test_bridge_security
from harness import free_port

from spec_vlm_control.zenoh_link import LinkSettings, access_control

bridge_pki = test_bridge_security.pki   # its CAs, and the cloud's and robots' certificates
REFUSED_WITHIN_S = 2.0   # a connected link carries a put in ~0.1-0.6 s here
ROBOTS = ["go2-a", "go2-b"]
REPLICAS = ["a", "b"]


@pytest.fixture
def users(tmp_path):
    """A credentials dictionary for the robots and replicas, and each one's password file."""
    names = ROBOTS + REPLICAS
    (tmp_path / "credentials").write_text("".join(f"{n}:pw-{n}\n" for n in names))
    for name in names:
        (tmp_path / f"{name}.password").write_text(f"pw-{name}\n")
    (tmp_path / "wrong.password").write_text("guess\n")
    return tmp_path


def auth(users, name, password=None):
    return {"user": name, "password_file": str(users / f"{password or name}.password")}


@pytest.fixture(scope="module")
def fleet_pki(bridge_pki):
    """The replicas' certificates beside the robots' (common name = id, same CA), and a
    go2-a certificate from another CA."""
    for name, ca in (("a", "ca"), ("b", "ca"), ("go2-a-other", "other-ca")):
        subject = name.removesuffix("-other")
        for args in (["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                      "-subj", f"/CN={subject}"],
                     ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
                      f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                      "-extfile", "san.cnf"]):
            subprocess.run(["openssl", *args], cwd=bridge_pki, check=True, capture_output=True,
                           timeout=30)
    return bridge_pki


def certificate(pki, name, ca="ca"):
    return {"tls_certificate": str(pki / f"{name}.pem"),
            "tls_private_key": str(pki / f"{name}.key"), "tls_root_ca": str(pki / f"{ca}.pem")}


def test_fleet_access_control_needs_identities_and_distinct_ids():
    with pytest.raises(ValueError, match="authenticate"):
        access_control(ROBOTS, usernames=False, cert_common_names=False, replicas=REPLICAS)
    with pytest.raises(ValueError, match="both a robot and a replica"):
        access_control(["a"], usernames=True, cert_common_names=False, replicas=["a"])
    with pytest.raises(ValueError, match="key expression"):
        access_control(ROBOTS, usernames=True, cert_common_names=False, replicas=["*"])


@pytest.mark.slow
@pytest.mark.parametrize("identity", ["user", "certificate"])
def test_router_binds_robots_and_replicas_to_their_own_keys(users, fleet_pki, identity):
    """One router with the fleet's access control; authenticated robots and replicas (by
    password, or by mutual TLS with common name = id), an impostor with a wrong password (a
    go2-a certificate from another CA) and one with no credentials (no client certificate).
    What each may do crosses; then, for REFUSED_WITHIN_S more, nothing else does."""
    if identity == "user":
        protocol, router_side = "tcp", {"credentials_file": str(users / "credentials")}

        def who(name):
            return auth(users, name)
        impostor, anonymous_side = auth(users, "go2-a", "wrong"), {}
    else:
        protocol, router_side = "tls", certificate(fleet_pki, "cloud")

        def who(name):
            return certificate(fleet_pki, name)
        impostor = certificate(fleet_pki, "go2-a-other", "other-ca")
        anonymous_side = {"tls_root_ca": str(fleet_pki / "ca.pem"), "tls_mutual": False}
    endpoint = f"{protocol}/127.0.0.1:{free_port()}"
    router = zenoh.open(LinkSettings(mode="router", listen=[endpoint], robots=ROBOTS,
                                     replicas=REPLICAS, **router_side).zenoh_config())
    sessions = []

    def connect(mode="peer", **identity):
        sessions.append(zenoh.open(LinkSettings(mode=mode, connect=[endpoint],
                                                **identity).zenoh_config()))
        return sessions[-1]

    got = {}                 # receiver -> {(key, payload)}

    def listen(session, receiver, key_expr, liveliness=False):
        def keep(sample):
            got.setdefault(receiver, set()).add(
                (str(sample.key_expr), b"" if liveliness else sample.payload.to_bytes()))
        if liveliness:
            session.liveliness().declare_subscriber(key_expr, keep, history=True)
        else:
            session.declare_subscriber(key_expr, keep)

    try:
        replica_a = connect("client", **who("a"))
        replica_b = connect("client", **who("b"))
        robot_a = connect(**who("go2-a"))
        robot_b = connect(**who("go2-b"))
        wrong = connect(**impostor)
        anonymous = connect(**anonymous_side)
        held = [replica_a.liveliness().declare_token("spec_vlm/replicas/a"),
                  replica_b.liveliness().declare_token("spec_vlm/replicas/b"),
                  replica_b.liveliness().declare_token("spec_vlm/replicas/z")]  # not its own
        listen(replica_a, "a", "spec_vlm/a/*/up/*")
        # (A session's own puts reach its own subscribers: eavesdroppers are other sessions.)
        listen(connect("client", **who("b")), "b", "spec_vlm/a/*/up/*")   # a's uplink
        listen(robot_a, "go2-a", "spec_vlm/*/go2-a/down/*")
        listen(robot_a, "go2-a tokens", "spec_vlm/replicas/*", liveliness=True)
        listen(robot_b, "go2-b", "spec_vlm/*/go2-a/down/*")        # go2-a's verdicts
        listen(robot_b, "go2-b", "spec_vlm/*/go2-b/down/*")
        listen(wrong, "wrong", "spec_vlm/*/go2-a/down/*")
        listen(connect(**anonymous_side), "anonymous", "spec_vlm/**")
        puts = [(robot_a, "spec_vlm/a/go2-a/up/request", b"go2-a"),     # allowed
                (replica_a, "spec_vlm/a/go2-a/down/verdict", b"a"),     # allowed
                (replica_b, "spec_vlm/a/go2-a/down/verdict", b"b as a"),
                (robot_a, "spec_vlm/a/go2-b/up/request", b"go2-a as go2-b"),
                (robot_a, "spec_vlm/a/go2-b/down/verdict", b"go2-a as a replica"),
                (robot_b, "spec_vlm/a/go2-a/up/draft", b"go2-b as go2-a"),
                (replica_b, "spec_vlm/a/go2-a/up/draft", b"b as go2-a"),
                (wrong, "spec_vlm/a/go2-a/up/cancel", b"wrong password"),
                (anonymous, "spec_vlm/a/go2-a/up/cancel", b"anonymous"),
                (anonymous, "spec_vlm/a/go2-a/down/verdict", b"anonymous")]
        allowed = {"a": {("spec_vlm/a/go2-a/up/request", b"go2-a")},
                   "go2-a": {("spec_vlm/a/go2-a/down/verdict", b"a")},
                   "go2-a tokens": {("spec_vlm/replicas/a", b""), ("spec_vlm/replicas/b", b"")}}

        def put_all(seconds):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and (seconds == REFUSED_WITHIN_S
                                                   or any(got.get(r) != allowed[r]
                                                          for r in allowed)):
                for session, key_expr, payload in puts:
                    session.put(key_expr, payload)
                time.sleep(0.05)
        put_all(20.0)
        assert {r: got.get(r) for r in allowed} == allowed
        put_all(REFUSED_WITHIN_S)
        assert got == allowed                 # nobody received anything else
        for token in held:
            token.undeclare()
    finally:
        for session in sessions:
            session.close()
        router.close()


@pytest.mark.slow
def test_installed_fleet_with_access_control_serves_a_robot_and_survives_hostile_input(
        users, ros_graph, cloud_graph, config_dir):
    """The installed router (credentials, robots and replicas lists), replica a's bridge (its
    verifier played by this test: it answers every request) and go2-a's fleet bridge. A request
    is answered; a bridge with a wrong password is never served; then hostile input: garbage,
    foreign keys, another robot's id, answers from a replica that does not serve the request,
    duplicated and reordered answers, a replica "b" that holds its token and never answers. Each is dropped and counted, or answered with an
    error within the bound; every process stays alive and a good request is answered again."""
    from rclpy.serialization import serialize_message
    from diagnostic_msgs.msg import DiagnosticArray
    from spec_vlm_control import topics
    from spec_vlm_control.graphs import REPLICA_BRIDGE, ROBOT_BRIDGE, ROUTER
    from spec_vlm_control.msg import CommittedTokens, DecodeError, DecodeRequest
    from spec_vlm_control.nodes.common import PROTOCOL_QOS
    from spec_vlm_control.replicas import rendezvous
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    answer_s = 1.0
    router = ros_graph.start_node(ROUTER, {"router_endpoint": endpoint}, {
        "credentials_file": str(users / "credentials"), "robots": ROBOTS,
        "replicas": REPLICAS}, config_dir)
    ros_graph.wait_for_log(router, "access control for robots")

    # Replica a: this test is its verifier, answering each request with one final chunk.
    requests = []
    answer = cloud_graph.node.create_publisher(CommittedTokens, topics.COMMITTED, PROTOCOL_QOS)

    def serve(msg):
        requests.append(msg)
        answer.publish(CommittedTokens(robot_id=msg.robot_id, request_id=msg.request_id,
                                       tokens=[7], finished=True))
    cloud_graph.node.create_subscription(DecodeRequest, topics.REQUEST, serve, PROTOCOL_QOS)
    replica = cloud_graph.start_node(REPLICA_BRIDGE, {"router_endpoint": endpoint,
                                                      "replica_id": "a"},
                                     auth(users, "a"), config_dir)
    cloud_graph.wait_for_log(replica, "declared")

    def drop_counts(graph):
        """What the bridge of `graph`'s domain reports dropping, by reason."""
        counts = {}
        graph.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, lambda d: counts.update(
            {v.key: int(v.value) for s in d.status if s.name == "spec_vlm_control: bridge"
             for v in s.values}), 10)
        return counts

    committed, errors = [], []
    dropped, replica_dropped = drop_counts(ros_graph), drop_counts(cloud_graph)
    node = ros_graph.node
    node.create_subscription(CommittedTokens, topics.COMMITTED, committed.append, PROTOCOL_QOS)
    node.create_subscription(DecodeError, topics.ERROR, errors.append, PROTOCOL_QOS)
    bridge = ros_graph.start_node(ROBOT_BRIDGE, {"cloud_endpoint": endpoint,
                                                 "robot_id": "go2-a", "fleet": True},
                                  {**auth(users, "go2-a"), "replica_answer_s": answer_s},
                                  config_dir)
    ros_graph.wait_for_log(bridge, "replica joined: a")
    intruder = ros_graph.start_node(ROBOT_BRIDGE, {"cloud_endpoint": endpoint,
                                                   "robot_id": "go2-b", "fleet": True},
                                    auth(users, "go2-b", "wrong"), config_dir,
                                    node_name="intruder")
    request_pub = node.create_publisher(DecodeRequest, topics.REQUEST, PROTOCOL_QOS)

    def decide(robot_id, request_ids, timeout=20.0):
        """Requests, sent together and resent until each ends (answered or failed); the
        first message that ended each (None: still open at the timeout)."""
        def ended(request_id):
            return next((m for m in committed + errors
                         if (m.robot_id, m.request_id) == (robot_id, request_id)), None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(map(ended, request_ids)):
            for request_id in request_ids:
                request_pub.publish(DecodeRequest(robot_id=robot_id, request_id=request_id))
            time.sleep(0.2)
        return [ended(request_id) for request_id in request_ids]

    (first,) = decide("go2-a", [1])
    assert isinstance(first, CommittedTokens) and list(first.tokens) == [7]
    (intruded,) = decide("go2-b", [1], timeout=REFUSED_WITHIN_S)   # wrong password: no replica
    assert isinstance(intruded, DecodeError) and intruded.code == DecodeError.CODE_OVERLOADED
    assert all(r.robot_id == "go2-a" for r in requests)

    # Hostile peers, each authenticated (the router's rules let them only this far).
    replica_b = zenoh.open(LinkSettings(mode="client", connect=[endpoint],
                                        **auth(users, "b")).zenoh_config())
    robot_b = zenoh.open(LinkSettings(connect=[endpoint], **auth(users, "go2-b")).zenoh_config())
    try:
        garbage = [b"", b"\x00", os.urandom(7), os.urandom(5000), b"\x00\x01\x00\x00" * 3]
        chunks = [CommittedTokens(robot_id="go2-a", request_id=1, start=n, tokens=[70 + n],
                                  finished=n == 1) for n in (1, 0)]       # reordered
        for payload in garbage:
            replica_b.put("spec_vlm/b/go2-a/down/committed", payload)  # to the robot bridge
            replica_b.put("spec_vlm/b/go2-a/down/nonsense", payload)
            replica_b.put("spec_vlm/a/go2-a/down/committed", payload)  # refused by the router
            robot_b.put("spec_vlm/a/go2-b/up/request", payload)        # to the replica bridge
            robot_b.put("spec_vlm/a/go2-b/up/nonsense", payload)
            robot_b.put("spec_vlm/a/go2-a/up/request", payload)        # refused by the router
        replica_b.put("spec_vlm/b/go2-a/down/committed", serialize_message(CommittedTokens(
            robot_id="go2-b", request_id=1, tokens=[9], finished=True)))   # another robot's id
        robot_b.put("spec_vlm/a/go2-b/up/request", serialize_message(
            DecodeRequest(robot_id="go2-a", request_id=99)))             # go2-b posing as go2-a
        for chunk in chunks + chunks:                                     # and duplicated:
            replica_b.put("spec_vlm/b/go2-a/down/committed", serialize_message(chunk))
            answer.publish(chunk)       # from a, the request's replica: forwarded as they come
        reasons = {"dropped: malformed", "dropped: unknown key",
                   "dropped: robot_id differs from key"}
        ros_graph.wait_for(
            lambda: reasons | {"dropped: not its request's replica"} <= set(dropped)
            and reasons <= set(replica_dropped), 10, "both bridges to count what they dropped")
        # Told apart by their tokens from the answers to the resent request 1 above.
        def forwarded():
            return [(m.start, list(m.tokens)) for m in committed
                    if m.request_id == 1 and any(t >= 70 for t in m.tokens)]
        ros_graph.wait_for(lambda: len(forwarded()) >= 4, 10,
                           "the replica's duplicated and reordered answers")
        assert forwarded() == [(1, [71]), (0, [70])] * 2      # as they came, none from b

        # Replica b holds its token and never answers: its requests fail within the bound.
        token = replica_b.liveliness().declare_token("spec_vlm/replicas/b")
        ros_graph.wait_for_log(bridge, "replica joined: b")
        on_b = [i for i in range(2, 40) if rendezvous("go2-a", i, REPLICAS) == "b"][:2]
        sent = time.monotonic()
        failed = decide("go2-a", on_b, timeout=answer_s + 5.0)
        assert all(isinstance(m, DecodeError) and m.code == DecodeError.CODE_SESSION_GONE
                   for m in failed), failed
        waited = time.monotonic() - sent
        # b is paused: new requests, even those its hash prefers, go to a and are answered.
        later = [i for i in range(100, 200) if rendezvous("go2-a", i, REPLICAS) == "b"][:2]
        assert all(isinstance(m, CommittedTokens) for m in decide("go2-a", later))
        token.undeclare()
    finally:
        replica_b.close()
        robot_b.close()
    assert all(r.robot_id == "go2-a" and r.request_id != 99 for r in requests)
    for process in (router, replica, bridge, intruder):
        assert process.alive(), process.log()
    assert isinstance(decide("go2-a", [500])[0], CommittedTokens)
    print(f"silent replica's 2 requests failed {waited:.1f} s after they were sent "
          f"(bound {answer_s} s each); dropped by the robot bridge {dropped}, by the replica "
          f"bridge {replica_dropped}")
