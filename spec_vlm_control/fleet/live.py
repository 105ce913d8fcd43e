"""The fleet benchmark's live check: N robots on the real ROS graph against one cloud.

Where `spec-vlm fleet-bench` (simulation.py) runs the robots and the cloud in one process in
virtual time, this starts the node processes as deployed: one cloud node (the demo pair's
target, its default batched scheduler) with its cloud bridge in the cloud's ROS domain, and
per robot an edge node (the demo pair's draft) and a robot bridge in that robot's own ROS
domain, each bridge adding half the round trip. No simulator or camera: each robot's
stand-in camera (a publisher of this process) shows the JPEG of the scene its decision gets
(workload.py's scenes and seeded table, as fleet-bench), waits until the edge holds that
frame (edge/frame), and instructs. The robots run closed loop as fleet-bench's do: a
decision, a fixed think time, the next, from the same seeded start offsets, the first
decision a warm-up. A decision's latency is the edge's RequestStats.total_s: from the edge
sending its request to its last verified token, in wall time.
"""
from __future__ import annotations

import contextlib
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .simulation import THINK_S
from .workload import Scene, Workload, robot_name

FRAME_WAIT_S = 5.0            # for the edge to hold the frame just shown
GRACE_S = 1.0                 # for the final verified chunk once the statistics are in


@dataclass
class LiveDecision:
    robot: int
    index: int                # 0 = the robot's warm-up
    scene: int
    request_id: int
    total_s: Optional[float]  # RequestStats.total_s (None: no statistics came)
    ok: bool
    error: str
    tokens: list[int]         # from verified_tokens


class LiveRobot:
    """One robot's ROS domain as this process sees it: a camera stand-in and instructions
    in; the edge's held frame, verified tokens and request statistics out."""

    def __init__(self, index: int, graph):
        from sensor_msgs.msg import CompressedImage
        from std_msgs.msg import Header, String

        from .. import topics
        from ..msg import RequestStats, VerifiedTokens
        from ..nodes.common import PROTOCOL_QOS, SENSOR_QOS
        from ..nodes.convert import stamp_ns
        self.index, self.graph = index, graph
        self.changed = threading.Condition()
        self.stats: list = []
        self.chunks: dict[int, list] = {}
        self.held_ns = 0
        node = graph.node

        def on(store):
            def callback(msg):
                with self.changed:
                    store(msg)
                    self.changed.notify_all()
            return callback
        node.create_subscription(RequestStats, topics.REQUEST_STATS, on(self.stats.append),
                                 PROTOCOL_QOS)
        node.create_subscription(
            VerifiedTokens, topics.VERIFIED_TOKENS,
            on(lambda m: self.chunks.setdefault(m.request_id, []).append(m)), PROTOCOL_QOS)
        node.create_subscription(Header, topics.EDGE_FRAME,
                                 on(lambda m: setattr(self, "held_ns", stamp_ns(m.stamp))),
                                 SENSOR_QOS)
        self._image = (CompressedImage, node.create_publisher(CompressedImage, topics.IMAGE,
                                                              SENSOR_QOS))
        self._instruction = (String, node.create_publisher(String, topics.INSTRUCTION,
                                                           PROTOCOL_QOS))

    def _wait(self, predicate, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def show(self, jpeg: bytes) -> bool:
        """Publish the frame (stamped now, every 50 ms: a best-effort topic) until the edge
        holds it."""
        kind, pub = self._image
        first = self.graph.node.get_clock().now().nanoseconds
        deadline = time.monotonic() + FRAME_WAIT_S
        while time.monotonic() < deadline:
            msg = kind(format="jpeg", data=jpeg)
            msg.header.stamp = self.graph.node.get_clock().now().to_msg()
            pub.publish(msg)
            if self._wait(lambda: self.held_ns >= first, 0.05):
                return True
        return False

    def decide(self, index: int, scene_index: int, scene: Scene,
               timeout: float) -> LiveDecision:
        """One decision on `scene`: its statistics and verified tokens."""
        failed = LiveDecision(self.index, index, scene_index, 0, None, False, "", [])
        with self.changed:
            seen = len(self.stats)
        if not self.show(scene.jpeg):
            failed.error = f"the edge did not take the frame within {FRAME_WAIT_S:g} s"
            return failed
        kind, pub = self._instruction
        if not self._wait(lambda: pub.get_subscription_count() > 0, FRAME_WAIT_S):
            failed.error = "the edge does not subscribe to instructions"
            return failed
        pub.publish(kind(data=scene.instruction))
        if not self._wait(lambda: len(self.stats) > seen, timeout):
            failed.error = f"no request statistics within {timeout:g} s"
            return failed
        stats = self.stats[seen]
        rid = stats.request_id
        self._wait(lambda: not stats.ok or any(m.final for m in self.chunks.get(rid, [])),
                   GRACE_S)
        with self.changed:
            chunks = sorted(self.chunks.pop(rid, []), key=lambda m: m.seq)
        return LiveDecision(self.index, index, scene_index, rid, float(stats.total_s),
                            bool(stats.ok), stats.error,
                            [int(t) for m in chunks for t in m.token_ids])


@dataclass(frozen=True)
class LiveSettings:
    robots: int
    decisions: int            # measured per robot, after its warm-up
    think_s: float = THINK_S
    rtt_ms: float = 50.0
    seed: int = 0
    decision_timeout_s: float = 30.0
    start_timeout_s: float = 180.0


class LiveFleet:
    """The graph: the cloud's domain (cloud node + cloud bridge), and per robot its domain
    (robot bridge, and an edge of the mode being run). `stack` stops every process."""

    def __init__(self, stack: contextlib.ExitStack, workload: Workload, pair,
                 settings: LiveSettings, log_dir: Path, first_mode: str,
                 domains: Optional[list[int]] = None):
        from ..graphs import CLOUD_BRIDGE, DEMO_OVERLAY, DEMO_VERIFIER, ROBOT_BRIDGE
        from ..processes import RosGraph, free_port
        log_dir.mkdir(parents=True, exist_ok=True)
        domains = domains or random.SystemRandom().sample(range(1, 233), settings.robots + 1)
        if len(set(domains)) != settings.robots + 1:
            raise ValueError(f"{settings.robots + 1} distinct ROS domains are needed (the "
                             f"cloud's, then one per robot), not {domains}")
        self.domains = domains
        self.workload, self.pair, self.settings = workload, pair, settings

        def graph(domain: int, probe: str):
            return stack.enter_context(contextlib.closing(RosGraph(domain, log_dir,
                                                                   probe_name=probe)))
        self.cloud = graph(domains[0], "fleet_live_cloud_probe")
        self.robots = [LiveRobot(i, graph(d, f"fleet_live_probe{i}"))
                       for i, d in enumerate(domains[1:])]
        endpoint = f"tcp/127.0.0.1:{free_port()}"
        half = {"link_latency_ms": settings.rtt_ms / 2}
        timeout = settings.start_timeout_s
        # All start at once, the first mode's edges too; the cloud's bridge listens first.
        bridges = [(self.cloud, self.cloud.start_node(
            CLOUD_BRIDGE.reading(DEMO_OVERLAY), {"listen_endpoint": endpoint}, half,
            wait=False))]
        verifier = self.cloud.start_node(
            DEMO_VERIFIER, {"target_model": str(pair.target),
                            "exit_adapters": str(pair.exit_adapters or "")},
            {"dtype": "fp32", "exit_layers": pair.exit_layers or [-1]}, wait=False)
        bridges += [(robot.graph, robot.graph.start_node(
            ROBOT_BRIDGE.reading(DEMO_OVERLAY),
            {"cloud_endpoint": endpoint, "robot_id": robot_name(robot.index)}, half,
            wait=False)) for robot in self.robots]
        self.mode, self.edges = first_mode, self._start_edges(first_mode)
        for graph, bridge in bridges:
            graph.wait_for_node("bridge", timeout, bridge)
        self.cloud.wait_for_log(verifier, "ready:", timeout)
        self._wait_edges()

    def _start_edges(self, mode: str) -> list:
        """An edge of `mode` per robot, all loading at once."""
        from ..graphs import DEMO_EDGE
        return [r.graph.start_node(
            DEMO_EDGE, {"draft_model": str(self.pair.draft), "robot_id": robot_name(r.index)},
            {"dtype": "fp32", "mode": mode, "block_size": self.workload.block_size,
             "max_new_tokens": self.workload.max_new_tokens, "live_baseline": False},
            wait=False) for r in self.robots]

    def _wait_edges(self) -> None:
        for robot, edge in zip(self.robots, self.edges):
            robot.graph.wait_for_log(edge, "ready:", self.settings.start_timeout_s)

    def _switch(self, mode: str) -> None:
        """The robots' edges of `mode` in place of the last mode's."""
        if mode == self.mode:
            return
        for edge in self.edges:             # all at once: shutting down takes each a while
            edge.interrupt()
        for edge in self.edges:
            edge.stop()
        self.mode, self.edges = mode, self._start_edges(mode)
        self._wait_edges()

    def run(self, mode: str, on_decision=None) -> list[LiveDecision]:
        """Every robot closed loop with an edge of `mode` until it has made its decisions."""
        s = self.settings
        self._switch(mode)
        rng = random.Random(f"{s.seed}:{s.robots}")     # simulation.py's offsets
        offsets = [rng.random() * (s.think_s if s.think_s > 0 else s.rtt_ms / 1000)
                   for _ in self.robots]
        decisions: list[LiveDecision] = []
        lock = threading.Lock()
        start = time.monotonic()

        def drive(robot: LiveRobot, offset: float) -> None:
            time.sleep(max(0.0, start + offset - time.monotonic()))
            for index in range(s.decisions + 1):
                scene = self.workload.scene_of(robot.index, index)
                d = robot.decide(index, scene, self.workload.scenes[scene],
                                 s.decision_timeout_s)
                with lock:
                    decisions.append(d)
                if on_decision is not None:
                    on_decision(d)
                time.sleep(s.think_s)

        threads = [threading.Thread(target=drive, args=(r, o), daemon=True)
                   for r, o in zip(self.robots, offsets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.mode = None                        # a mode's run starts with fresh edges
        return sorted(decisions, key=lambda d: (d.robot, d.index))


def summary(decisions: list[LiveDecision], robots: int) -> dict:
    """p50 and p99 of the measured decisions' total_s, overall and per robot."""
    def stats(ds: list[LiveDecision]) -> dict:
        ok = [d.total_s for d in ds if d.ok]
        pct = (lambda q: float(np.percentile(ok, q))) if ok else (lambda q: None)
        return dict(decisions=len(ds), failed=len(ds) - len(ok), p50_s=pct(50), p99_s=pct(99),
                    mean_s=float(np.mean(ok)) if ok else None)
    measured = [d for d in decisions if d.index > 0]
    return dict(stats(measured), per_robot={robot_name(r): stats([d for d in measured
                                                                  if d.robot == r])
                                            for r in range(robots)})


def target_answers(workload: Workload, decisions: list[LiveDecision]) -> dict[int, list[int]]:
    """The target's own greedy answer of each scene shown (Hugging Face `generate` on the
    prompt the cloud builds from the request): what every lossless decision must decide."""
    import torch

    from ..core.protocol import DecodingParams
    from ..demo_pair.evaluation import greedy
    target = workload.target
    shown = {d.scene: d for d in decisions}
    answers = {}
    with torch.inference_mode():
        for scene, d in sorted(shown.items()):
            prompt = workload.cloud_prompt(workload.request(d.robot, d.index, DecodingParams()))
            answers[scene] = greedy(target.adapter.model, prompt, target.adapter.image_token_id,
                                    workload.max_new_tokens)
    return answers


def as_dicts(decisions: list[LiveDecision]) -> list[dict]:
    return [asdict(d) for d in decisions]
