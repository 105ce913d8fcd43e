"""Pure parts of the link across sites: keys, endpoint security, the emulated delay line."""
import threading
import time

import pytest

from spec_vlm_control.core.link import LinkEmulator
from spec_vlm_control.zenoh_link import (DelayLine, InsecureEndpoint, LinkSettings,
                                         check_endpoints, key, parse_key)


def test_keys_round_trip_and_reject_wildcards():
    k = key("go2-a", "up", "spec_vlm/draft")
    assert k == "spec_vlm/go2-a/up/draft" and parse_key(k) == ("go2-a", "up", "draft")
    with pytest.raises(ValueError):
        key("go2/*", "up", "draft")


@pytest.mark.parametrize("endpoint", ["tcp/127.0.0.1:7447", "udp/[::1]:7447",
                                      "tcp/localhost:7447", "tls/cloud.example.com:7447"])
def test_loopback_and_tls_endpoints_pass(endpoint):
    check_endpoints([endpoint], allow_insecure=False)


def test_remote_plain_endpoint_needs_explicit_permission():
    with pytest.raises(InsecureEndpoint):
        check_endpoints(["tcp/10.0.0.5:7447"], allow_insecure=False)
    check_endpoints(["tcp/10.0.0.5:7447"], allow_insecure=True)
    with pytest.raises(InsecureEndpoint):
        LinkSettings(mode="client", connect=["tcp/198.51.100.1:7447"]).zenoh_config()


def test_client_mode_needs_a_router():
    with pytest.raises(ValueError, match="router"):
        LinkSettings(mode="client").zenoh_config()


def test_delay_line_delays_and_drops_like_the_emulator():
    got = []
    done = threading.Event()

    def deliver(item):
        got.append((time.monotonic(), item))
        if len(got) == 3:
            done.set()

    line = DelayLine(LinkEmulator(latency_s=0.05, loss=0.0, seed=1), deliver)
    start = time.monotonic()
    for i in range(3):
        line.send(i)
    assert done.wait(2)
    line.close()
    assert [item for _, item in got] == [0, 1, 2]
    assert all(t - start >= 0.05 for t, _ in got)

    lossy = []
    line = DelayLine(LinkEmulator(latency_s=0.001, loss=1.0, seed=1), lossy.append)
    line.send("lost")
    time.sleep(0.05)
    line.close()
    assert lossy == []


def test_tls_roles_pick_server_or_mutual_authentication(tmp_path):
    pem = tmp_path / "x.pem"
    pem.write_text("")
    cloud = LinkSettings(listen=["tls/127.0.0.1:7447"], tls_certificate=str(pem),
                         tls_private_key=str(pem), tls_mutual=False).zenoh_config()
    assert cloud.get_json("transport/link/tls/enable_mtls") == "false"
    robot = LinkSettings(connect=["tls/127.0.0.1:7447"], tls_root_ca=str(pem),
                         tls_mutual=False).zenoh_config()
    assert robot.get_json("transport/link/tls/connect_certificate") == "null"
    with pytest.raises(ValueError, match="tls_certificate must be set"):
        LinkSettings(connect=["tls/127.0.0.1:7447"], tls_root_ca=str(pem)).zenoh_config()
    with pytest.raises(ValueError, match="tls_root_ca must be set"):
        LinkSettings(listen=["tls/127.0.0.1:7447"], tls_certificate=str(pem),
                     tls_private_key=str(pem)).zenoh_config()


def test_credentials_dictionary_is_checked_line_by_line(tmp_path):
    dictionary = tmp_path / "credentials"
    dictionary.write_text("go2-a:secret\n\ngo2-b\n")
    with pytest.raises(ValueError, match="line 3: expected user:password"):
        LinkSettings(listen=["tcp/127.0.0.1:7447"],
                     credentials_file=str(dictionary)).zenoh_config()
