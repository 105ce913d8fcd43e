"""A fleet on loopback (docs/scaleout.md): a zenoh router with user/password authentication
and access control from its robots and replicas lists (docs/security.md), cloud replicas
(verifier + bridge, each in its own ROS domain, clients of the router) and four robots (edge + fleet bridge each; they share one ROS domain and tell their traffic apart
by robot_id). Round by round every robot decides once. One replica is killed while it is
serving requests, one joins later; each request goes to the rendezvous choice among the
replicas live when it started, the killed replica's requests fail at once with SESSION_GONE,
and every other request, before and after, is the target's own greedy answer."""
import contextlib
import time

import pytest
from conftest import ros_domain
from harness import free_port
from robot_site import MAX_NEW_TOKENS, Robot
from tiny_models import INSTRUCTION, jpeg_frame, reference_greedy, save_tiny_vlm

from spec_vlm_control import topics
from spec_vlm_control.graphs import EDGE, REPLICA_BRIDGE, ROBOT_BRIDGE, ROUTER, VERIFIER
from spec_vlm_control.msg import DecodeError, DecodeRequest, RequestStats
from spec_vlm_control.nodes.common import PROTOCOL_QOS
from spec_vlm_control.replicas import rendezvous

ROBOTS = ["go2-a", "go2-b", "go2-c", "go2-d"]
LATENCY_MS = 60.0          # each way on every bridge: a request spans several round trips
GONE_WITHIN_S = 2.0
# Long enough that a request the killed replica was not serving never hits it on a loaded
# 2-core machine: a request failed by its deadline is no SESSION_GONE and fails the test.
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp("target"), seed=3)


class Fleet:
    def __init__(self, robots_graph, config_dir, tmp_path, stack, target):
        self.graph, self.config_dir, self.tmp = robots_graph, config_dir, tmp_path
        self.stack = stack
        self.target = target
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        users = ROBOTS + ["a", "b", "c"]
        (tmp_path / "credentials").write_text("".join(f"{u}:pw-{u}\n" for u in users))
        for user in users:
            (tmp_path / f"{user}.password").write_text(f"pw-{user}\n")
        self.replicas = {}        # id -> (graph, cloud, bridge)
        self.arrived = {}         # (robot_id, request_id) -> replica it reached

    def auth(self, user):
        return {"user": user, "password_file": str(self.tmp / f"{user}.password")}

    def start_router(self):
        router = self.graph.start_node(ROUTER, {"router_endpoint": self.endpoint},
                                       {"credentials_file": str(self.tmp / "credentials"),
                                        "robots": ROBOTS, "replicas": list("abc")},
                                       self.config_dir)
        self.graph.wait_for_log(router, "listening")

    def start_replica(self, replica_id):
        """Verifier first, then its bridge: the token appears once the verifier listens."""
        graph = self.stack.enter_context(ros_domain(self.tmp))
        graph.node.create_subscription(
            DecodeRequest, topics.REQUEST,
            lambda m: self.arrived.setdefault((m.robot_id, m.request_id), replica_id),
            PROTOCOL_QOS)
        cloud = graph.start_node(VERIFIER, {"target_model": str(self.target)},
                                 {"dtype": "fp64", "exit_layers": [1], "threads": 1}, self.config_dir,
                                 wait=False)
        self.replicas[replica_id] = (graph, cloud, None)
        return cloud

    def connect_replica(self, replica_id):
        graph, cloud, _ = self.replicas[replica_id]
        graph.wait_for_log(cloud, "ready:", 120)
        bridge = graph.start_node(REPLICA_BRIDGE, {"router_endpoint": self.endpoint,
                                                   "replica_id": replica_id},
                                  {"link_latency_ms": LATENCY_MS, **self.auth(replica_id)},
                                  self.config_dir)
        graph.wait_for_log(bridge, "declared")
        self.replicas[replica_id] = (graph, cloud, bridge)

    def kill_replica(self, replica_id):
        _, cloud, bridge = self.replicas.pop(replica_id)
        bridge.kill()
        cloud.kill()


def round_of_requests(robot: Robot, graph, done_before: int):
    """Instruct every robot once; their statistics (by robot_id) once all have ended."""
    robot.instruct(INSTRUCTION)
    graph.wait_for(lambda: len(robot.stats) >= done_before + len(ROBOTS), 60,
                   "every robot's request to end")
    return {s.robot_id: s for s in robot.stats[done_before:]}


def verified(robot: Robot, request_id) -> list:
    return sorted((m for m in robot.verified if m.request_id == request_id), key=lambda m: m.seq)


def test_a_replica_dies_and_one_joins_while_four_robots_decide(
        ros_graph, config_dir, tmp_path, tiny_target):
    began = time.monotonic()
    jpeg = jpeg_frame(seed=4)
    reference, _ = reference_greedy(tiny_target, INSTRUCTION, jpeg, MAX_NEW_TOKENS)
    with contextlib.ExitStack() as stack:
        fleet = Fleet(ros_graph, config_dir, tmp_path, stack, tiny_target)
        fleet.start_router()
        for replica_id in "abc":      # c's verifier loads now; c joins when its bridge does
            fleet.start_replica(replica_id)
        edges, bridges = [], {}
        for n, robot_id in enumerate(ROBOTS):
            edges.append(ros_graph.start_node(
                EDGE, {"draft_model": str(tiny_target), "robot_id": robot_id},
                {"dtype": "fp64", "threads": 1, "max_frame_age_at_decision_s": 5.0,
                 "mode": "plain", "block_size": 1, "max_new_tokens": MAX_NEW_TOKENS,
                 "deadline_s": DEADLINE_S,
                 "resend_after_s": 0.3}, config_dir, node_name=f"edge_{n}", wait=False))
        for replica_id in "ab":
            fleet.connect_replica(replica_id)
        for n, robot_id in enumerate(ROBOTS):
            bridges[robot_id] = ros_graph.start_node(
                ROBOT_BRIDGE, {"cloud_endpoint": fleet.endpoint, "robot_id": robot_id,
                               "fleet": True},
                {"link_latency_ms": LATENCY_MS, **fleet.auth(robot_id)}, config_dir,
                node_name=f"bridge_{n}", wait=False)
        for process in edges:
            ros_graph.wait_for_log(process, "ready:", 120)
        for bridge in bridges.values():
            for replica_id in "ab":
                ros_graph.wait_for_log(bridge, f"replica joined: {replica_id}")
        robot = Robot(ros_graph, jpeg)
        stack.callback(robot.close)
        ended_at = {}
        ros_graph.node.create_subscription(
            RequestStats, topics.REQUEST_STATS,
            lambda s: ended_at.setdefault(s.request_id, time.monotonic()), PROTOCOL_QOS)

        def check_exact(stats, live):
            """An answered request: the target's tokens, each chunk once, one final; it
            reached the replica rendezvous hashing picks among `live`."""
            chunks = verified(robot, stats.request_id)
            assert stats.ok, stats.error
            assert [t for m in chunks for t in m.token_ids] == reference
            assert [m.seq for m in chunks] == list(range(len(chunks)))
            assert [m.final for m in chunks] == [False] * (len(chunks) - 1) + [True]
            chosen = rendezvous(stats.robot_id, stats.request_id, live)
            assert fleet.arrived[(stats.robot_id, stats.request_id)] == chosen

        done = 0
        print(f"fleet up after {time.monotonic() - began:.1f} s")
        for stats in round_of_requests(robot, ros_graph, done).values():   # warm: a and b
            check_exact(stats, "ab")
        done += len(ROBOTS)

        # Round 2: once every request is under way, kill the replica serving the most.
        robot.instruct(INSTRUCTION)
        ros_graph.wait_for(lambda: len(fleet.arrived) == 2 * len(ROBOTS), 30,
                           "round 2's requests to reach the replicas")
        round2 = dict(list(fleet.arrived.items())[len(ROBOTS):])
        ros_graph.wait_for(lambda: all(verified(robot, rid) for _, rid in round2), 30,
                           "every round-2 request's first token")
        victim = max("ab", key=lambda r: sum(v == r for v in round2.values()))
        survivor = "b" if victim == "a" else "a"
        killed_at = time.monotonic()
        fleet.kill_replica(victim)
        ros_graph.wait_for(lambda: len(robot.stats) >= done + len(ROBOTS), 30,
                           "round 2 to end")
        gone_s = []
        for stats in robot.stats[done:]:
            if round2[(stats.robot_id, stats.request_id)] == survivor:
                check_exact(stats, "ab")
                continue
            chunks = verified(robot, stats.request_id)
            tokens = [t for m in chunks for t in m.token_ids]
            assert tokens == reference[:len(tokens)], "a token the target did not decide"
            if stats.ok:                      # it finished before the bridges noticed
                assert tokens == reference
                continue
            assert stats.error.startswith(f"cloud error {DecodeError.CODE_SESSION_GONE}:"), \
                stats.error
            gone_s.append(ended_at[stats.request_id] - killed_at)
        assert gone_s, "no request was in flight on the killed replica"
        assert max(gone_s) <= GONE_WITHIN_S, gone_s
        done += len(ROBOTS)

        # Round 3: everything on the survivor, exact.
        for stats in round_of_requests(robot, ros_graph, done).values():
            check_exact(stats, survivor)
        done += len(ROBOTS)

        # Replica c joins; rounds until it has served a request (every request exact).
        print(f"round 3 done after {time.monotonic() - began:.1f} s")
        fleet.connect_replica("c")
        for bridge in bridges.values():
            ros_graph.wait_for_log(bridge, "replica joined: c")
        served_by_c = 0
        for _ in range(3):
            for stats in round_of_requests(robot, ros_graph, done).values():
                check_exact(stats, survivor + "c")
                served_by_c += fleet.arrived[(stats.robot_id, stats.request_id)] == "c"
            done += len(ROBOTS)
            if served_by_c:
                break
        assert served_by_c
        print(f"killed replica {victim}: {len(gone_s)} in-flight request(s) failed "
              f"{', '.join(f'{1000 * s:.0f}' for s in gone_s)} ms after the kill; "
              f"replica c served {served_by_c} request(s) after joining; "
              f"{done} requests in all, {time.monotonic() - began:.1f} s")
