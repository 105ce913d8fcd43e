"""Which replica serves which request (replicas.py), and the liveliness tokens behind the live
set (replica_link.py) on a loopback zenoh router."""
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spec_vlm_control.replicas import (Assignments, rendezvous, replica_of, token_key,
                                       weight)

REPLICAS = ["a", "b", "c", "d"]


def test_weights_are_the_same_in_every_process():
    # fixed digests, not Python's per-process salted hash()
    assert weight("a", "go2", 7) == weight("a", "go2", 7) == 0xe97e61c41bd241f0
    assert rendezvous("go2", 7, []) is None


def test_rendezvous_spreads_requests_and_a_join_moves_only_its_share():
    before = {i: rendezvous("go2", i, REPLICAS[:3]) for i in range(3000)}
    counts = Counter(before.values())
    assert all(900 <= counts[r] <= 1100 for r in REPLICAS[:3]), counts
    after = {i: rendezvous("go2", i, REPLICAS) for i in range(3000)}
    moved = [i for i in before if before[i] != after[i]]
    assert all(after[i] == "d" for i in moved)            # only to the newcomer
    assert 600 <= len(moved) <= 900                        # about a quarter


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(REPLICAS), min_size=2), st.text(min_size=1, max_size=8),
       st.integers(0, 2**64 - 1))
def test_a_leaving_replica_moves_only_its_own_requests(live, robot_id, request_id):
    chosen = rendezvous(robot_id, request_id, live)
    for gone in live:
        after = rendezvous(robot_id, request_id, live - {gone})
        assert after == chosen if gone != chosen else after != gone
    assert rendezvous(robot_id, request_id, sorted(live)) == chosen   # order does not matter


def test_assignment_is_sticky_and_a_gone_replica_fails_only_its_open_requests():
    table = Assignments()
    for replica in "ab":
        assert table.join(replica)
    assert not table.join("a")
    first = {i: table.route("go2", i) for i in range(40)}
    table.join("c")                          # later blocks of earlier requests stay put
    assert {i: table.route("go2", i) for i in range(40)} == first
    on_a = [i for i in first if first[i] == "a"]
    assert not table.heard("go2", on_a[0], epoch=7, ended=True, replica="b")  # not its replica
    assert table.heard("go2", on_a[0], epoch=99, ended=False, replica="a")
    assert table.heard("go2", on_a[1], epoch=99, ended=True)  # finished: nothing to fail
    table.end("go2", on_a[2])                                 # cancelled by the robot
    failed = table.leave("a")
    assert sorted(failed) == sorted([("go2", on_a[0], 99)]
                                    + [("go2", i, 0) for i in on_a[3:]])
    assert table.leave("a") == []                             # failed once
    assert all(table.route("go2", i) is None for i in on_a)   # their messages go nowhere
    assert table.route("go2", 1000) in {"b", "c"}             # new requests: live ones only
    table.join("a")                                           # a restarted replica "a"
    assert all(table.route("go2", i) is None for i in on_a)   # does not get old sessions


def test_the_table_is_bounded_and_forgets_the_oldest():
    table = Assignments(max_requests=3)
    table.join("a")
    for i in range(5):
        table.route("go2", i)
    assert len(table) == 3
    table.leave("a")
    table.join("b")
    assert table.route("go2", 0) == "b"        # forgotten: follows the hash again
    assert table.route("go2", 4) is None       # remembered: its replica is gone


def test_a_silent_replica_fails_its_unanswered_requests_and_is_paused():
    """A replica whose token lives but which answers nothing: its requests fail after
    answer_within_s, it takes no new request while paused, and an answer, a re-declared
    token or the end of the pause brings it back."""
    table = Assignments(answer_within_s=2.0)
    table.join("a")
    table.join("b")
    on = {r: [i for i in range(40) if rendezvous("go2", i, "ab") == r] for r in "ab"}
    for i in range(40):
        table.route("go2", i, now=0.0)
    for i in on["b"]:
        table.heard("go2", i, epoch=5, ended=False)              # b answers
    table.end("go2", on["a"][0])                                  # cancelled: nothing to fail
    assert table.unanswered(now=2.0) == []                        # not late yet
    assert sorted(table.unanswered(now=2.5)) == [("a", "go2", i, 0) for i in on["a"][1:]]
    assert table.unanswered(now=3.0) == []                        # failed once
    assert all(table.route("go2", i) is None for i in on["a"][1:])  # late answers go nowhere
    assert {table.route("go2", 100 + i, now=3.0) for i in range(20)} == {"b"}   # a paused
    for i in range(20):
        table.heard("go2", 100 + i, epoch=5, ended=True)
    table.heard("go2", on["a"][0], epoch=1, ended=True)           # a late answer: a is back
    routed = {300 + i: table.route("go2", 300 + i, now=3.0) for i in range(20)}
    assert set(routed.values()) == {"a", "b"}
    for i in routed:
        if routed[i] == "b":
            table.heard("go2", i, epoch=5, ended=True)
    assert {late[0] for late in table.unanswered(now=100.0)} == {"a"}   # a silent again
    assert {table.route("go2", 400 + i, now=100.0) for i in range(20)} == {"b"}
    table.join("a")                                               # token declared again
    assert {table.route("go2", 500 + i, now=100.0) for i in range(20)} == {"a", "b"}
    assert {late[0] for late in table.unanswered(now=200.0)} == {"a", "b"}
    assert table.route("go2", 600, now=219.0) is None             # both paused ...
    assert {table.route("go2", 600 + i, now=221.0) for i in range(20)} == {"a", "b"}  # ... over


def test_no_replica_no_route():
    assert Assignments().route("go2", 1) is None
    with pytest.raises(ValueError):
        Assignments(max_requests=0)


def test_token_keys():
    assert replica_of(token_key("r-1")) == "r-1"
    for bad in ("", "a/b", "*"):
        with pytest.raises(ValueError):
            token_key(bad)
    with pytest.raises(ValueError):
        replica_of("spec_vlm/other/r-1")


def test_watch_follows_tokens_through_a_router(tmp_path):
    """Real zenoh on loopback: a router, a replica client holding its token, a robot peer
    watching; existing tokens are known at once, a withdrawn or closed one fails the
    requests it was serving."""
    import zenoh
    from harness import free_port

    from spec_vlm_control.replica_link import TOKENS, ReplicaToken, ReplicaWatch
    from spec_vlm_control.zenoh_link import LinkSettings
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    router = zenoh.open(LinkSettings(mode="router", listen=[endpoint]).zenoh_config())
    replicas = {r: zenoh.open(LinkSettings(mode="client", connect=[endpoint]).zenoh_config())
                for r in "ab"}
    robot = zenoh.open(LinkSettings(connect=[endpoint]).zenoh_config())
    try:
        tokens = {r: ReplicaToken(s, r) for r, s in replicas.items()}
        assert tokens["a"].hold(True) is True and tokens["a"].hold(True) is None
        # a's token has reached the router (a fixed sleep was too short on a loaded machine)
        wait(lambda: any(reply.ok is not None
                         for reply in robot.liveliness().get(f"{TOKENS}/*", timeout=0.5)))
        table, joined, gone = Assignments(), [], []
        ReplicaWatch(robot, table, joined.append, lambda r, serving: gone.append((r, serving)))
        assert table.live == {"a"} and joined == ["a"]           # known before any request
        assert table.route("go2", 1) == "a"
        tokens["b"].hold(True)
        wait(lambda: table.live == {"a", "b"})
        assert tokens["a"].hold(False) is False
        wait(lambda: gone)
        assert gone == [("a", [("go2", 1, 0)])] and table.live == {"b"}
        table.route("go2", 2)
        started = time.monotonic()
        replicas.pop("b").close()                                 # the session ends
        wait(lambda: len(gone) == 2)
        assert gone[1] == ("b", [("go2", 2, 0)])
        print(f"a closed replica session left the live set after "
              f"{1000 * (time.monotonic() - started):.0f} ms")
    finally:
        for session in (robot, *replicas.values(), router):
            session.close()


def wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
