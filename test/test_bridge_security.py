"""The link's security as documented (docs/security.md), on loopback with real zenoh sessions
configured by `LinkSettings` (what the bridge opens) and real bridges: user/password, server-
authenticated and mutual TLS, and the access-control rules that bind robots to their keys.
A refused peer is shown by *no message crossing* within a bound."""
import subprocess
import time

import pytest
import zenoh

from harness import EXECUTABLES, free_port, ros_env

from spec_vlm_control.zenoh_link import LinkSettings, access_control

REFUSED_WITHIN_S = 2.0   # a connected link carries a put in ~0.1-0.6 s here


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA and certificates (SAN IP:127.0.0.1, DNS:localhost) for the cloud and two
    robots, whose common names are their ids; and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN={ca}")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("cloud", "go2-a", "go2-b"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.cnf")
    (d / "credentials").write_text("go2-a:secret-a\ngo2-b:secret-b\n")
    for name, password in (("a", "secret-a"), ("b", "secret-b"), ("wrong", "guess")):
        (d / f"password-{name}").write_text(password + "\n")
    return d


def crosses(cloud: dict, robot: dict, key_expr="spec_vlm/go2-a/up/request",
            downward=False, protocol="tcp") -> bool:
    """Whether a put on `key_expr` (robot -> cloud, or cloud -> robot when `downward`) reaches
    a subscriber on the other side within REFUSED_WITHIN_S."""
    endpoint = f"{protocol}/127.0.0.1:{free_port()}"
    cloud_session = zenoh.open(LinkSettings(listen=[endpoint], **cloud).zenoh_config())
    robot_session = zenoh.open(LinkSettings(connect=[endpoint], **robot).zenoh_config())
    try:
        receiver, sender = ((robot_session, cloud_session) if downward
                            else (cloud_session, robot_session))
        got = []
        receiver.declare_subscriber(key_expr, lambda sample: got.append(sample))
        deadline = time.monotonic() + REFUSED_WITHIN_S
        while not got and time.monotonic() < deadline:
            sender.put(key_expr, b"payload")
            time.sleep(0.05)
        return bool(got)
    finally:
        robot_session.close()
        cloud_session.close()


def user(pki, name, password):
    return {"user": name, "password_file": str(pki / f"password-{password}")}


@pytest.mark.slow
def test_user_password_connects_with_the_right_password_only(pki):
    cloud = {"credentials_file": str(pki / "credentials")}
    assert crosses(cloud, user(pki, "go2-a", "a"))
    assert crosses(cloud, user(pki, "go2-a", "a"), "spec_vlm/go2-a/down/verdict", downward=True)
    assert not crosses(cloud, user(pki, "go2-a", "wrong"))
    assert not crosses(cloud, user(pki, "go2-a", "b"))       # another robot's password
    assert not crosses(cloud, {})                              # no credentials at all


@pytest.mark.slow
def test_server_authenticated_tls_checks_the_cloud_certificate(pki):
    cloud = {"tls_certificate": str(pki / "cloud.pem"), "tls_private_key": str(pki / "cloud.key"),
             "tls_mutual": False}
    assert crosses(cloud, {"tls_root_ca": str(pki / "ca.pem"), "tls_mutual": False},
                   protocol="tls")
    assert not crosses(cloud, {"tls_root_ca": str(pki / "other-ca.pem"), "tls_mutual": False},
                       protocol="tls")
    # The robot proves who it is with its password instead of a certificate.
    cloud["credentials_file"] = str(pki / "credentials")
    robot = {"tls_root_ca": str(pki / "ca.pem"), "tls_mutual": False}
    assert crosses(cloud, {**robot, **user(pki, "go2-a", "a")}, protocol="tls")
    assert not crosses(cloud, {**robot, **user(pki, "go2-a", "wrong")}, protocol="tls")


def mutual(pki, name):
    return {"tls_certificate": str(pki / f"{name}.pem"), "tls_private_key": str(pki / f"{name}.key"),
            "tls_root_ca": str(pki / "ca.pem")}


@pytest.mark.slow
def test_mutual_tls_requires_a_client_certificate(pki):
    assert crosses(mutual(pki, "cloud"), mutual(pki, "go2-a"), protocol="tls")
    assert not crosses(mutual(pki, "cloud"), {"tls_root_ca": str(pki / "ca.pem"),
                                              "tls_mutual": False}, protocol="tls")


@pytest.mark.slow
@pytest.mark.parametrize("identity", ["user", "certificate"])
def test_access_control_binds_each_robot_to_its_own_keys(pki, identity):
    """Robot go2-a, authenticated as itself, may publish only its own up keys and receive only
    its own down keys; it may not publish down keys at all."""
    robots = {"robots": ["go2-a", "go2-b"]}
    if identity == "user":
        cloud, robot, protocol = ({"credentials_file": str(pki / "credentials"), **robots},
                                  user(pki, "go2-a", "a"), "tcp")
    else:
        cloud, robot, protocol = {**mutual(pki, "cloud"), **robots}, mutual(pki, "go2-a"), "tls"
    assert crosses(cloud, robot, "spec_vlm/go2-a/up/request", protocol=protocol)
    assert crosses(cloud, robot, "spec_vlm/go2-a/down/committed", downward=True,
                   protocol=protocol)
    assert not crosses(cloud, robot, "spec_vlm/go2-b/up/request", protocol=protocol)
    assert not crosses(cloud, robot, "spec_vlm/go2-b/down/committed", downward=True,
                       protocol=protocol)
    assert not crosses(cloud, robot, "spec_vlm/go2-a/down/committed", protocol=protocol)


def test_access_control_needs_an_authenticated_identity():
    with pytest.raises(ValueError, match="authenticate"):
        access_control(["go2-a"], usernames=False, cert_common_names=False)
    with pytest.raises(ValueError, match="key expression"):
        access_control(["go2/*"], usernames=True, cert_common_names=False)


def start_bridge(tmp_path, domain_id, params):
    cmd = [str(EXECUTABLES / "bridge"), "--ros-args"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    log = tmp_path / "bridge.log"
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env=ros_env(domain_id)), log


@pytest.mark.parametrize("params, says", [
    ({"listen": "['tcp/0.0.0.0:7447']"}, "refusing tcp/0.0.0.0:7447: it leaves this machine"),
    ({"link_loss": "1.5"}, "parameter 'link_loss' = 1.5: must be >= 0 and <= 1"),
    ({"robot_id": "'go2/*'"}, "cannot be part of a key expression"),
    ({"listen": "['tls/127.0.0.1:7447']"}, "must be set for a tls/ endpoint"),
    ({"credentials_file": "/nonexistent/credentials"}, "No such file"),
])
def test_bad_configuration_ends_with_one_line_and_status_1(tmp_path, domain_id, params, says):
    process, log = start_bridge(tmp_path, domain_id, {"side": "cloud", **params})
    assert process.wait(timeout=30) == 1
    lines = log.read_text().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bridge: error:") and says in lines[0], lines


def test_bridges_with_credentials_and_access_control_carry_a_robots_traffic(
        pki, ros_graph, cloud_graph, config_dir):
    """The installed bridges, configured as docs/security.md says: the cloud's with its
    credentials dictionary and robot list, the robot's with its user and password file."""
    from rclpy.serialization import serialize_message
    from spec_vlm_control import topics
    from spec_vlm_control.msg import DraftBlock, Verdict
    from spec_vlm_control.nodes.common import PROTOCOL_QOS
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    cloud_graph.start("bridge", config_dir / "bridge_cloud.yaml", params={
        "listen": f"['{endpoint}']", "credentials_file": str(pki / "credentials"),
        "robots": "['go2-a', 'go2-b']"})
    ros_graph.start("bridge", config_dir / "bridge_robot.yaml", params={
        "connect": f"['{endpoint}']", "robot_id": "go2-a", "user": "go2-a",
        "password_file": str(pki / "password-a")})
    drafts, verdicts = [], []
    cloud_graph.node.create_subscription(DraftBlock, topics.DRAFT, drafts.append, PROTOCOL_QOS)
    ros_graph.node.create_subscription(Verdict, topics.VERDICT, verdicts.append, PROTOCOL_QOS)
    draft_pub = ros_graph.node.create_publisher(DraftBlock, topics.DRAFT, PROTOCOL_QOS)
    verdict_pub = cloud_graph.node.create_publisher(Verdict, topics.VERDICT, PROTOCOL_QOS)
    deadline = time.monotonic() + 20
    while not (drafts and verdicts) and time.monotonic() < deadline:
        draft_pub.publish(DraftBlock(robot_id="go2-a", request_id=1, tokens=[3]))
        verdict_pub.publish(Verdict(robot_id="go2-a", request_id=1, accepted=1))
        time.sleep(0.05)
    assert drafts and verdicts
    # An intruder with go2-b's credentials cannot write into go2-a's uplink.
    intruder = zenoh.open(LinkSettings(connect=[endpoint], **user(pki, "go2-b", "b")).zenoh_config())
    try:
        forged = serialize_message(DraftBlock(robot_id="go2-a", request_id=99, tokens=[3]))
        for _ in range(int(REFUSED_WITHIN_S / 0.05)):
            intruder.put("spec_vlm/go2-a/up/draft", forged)
            time.sleep(0.05)
    finally:
        intruder.close()
    assert all(d.request_id == 1 for d in drafts)
