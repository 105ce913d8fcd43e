"""A robot's site as a graph test sees it (frames and instructions in, verified tokens,
statistics and verdicts out) and the nodes that decide for it, started from the installed
executables with the YAML of config/."""
import threading
import time

from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from spec_vlm_control import topics
from spec_vlm_control.graphs import EDGE, VERIFIER
from spec_vlm_control.msg import RequestStats, Verdict, VerifiedTokens
from spec_vlm_control.nodes.common import PROTOCOL_QOS, SENSOR_QOS

MAX_NEW_TOKENS = 12


class Robot:
    """What the robot's domain shows a test: frames in, instructions in, results out."""

    def __init__(self, graph, jpeg: bytes | None):
        """`jpeg`: frames this stand-in camera publishes at 20 Hz (None: a camera node does)."""
        self.graph = graph
        self.verified: list[VerifiedTokens] = []
        self.stats: list[RequestStats] = []
        self.verdicts: list[tuple[float, Verdict]] = []
        node = graph.node
        node.create_subscription(VerifiedTokens, topics.VERIFIED_TOKENS, self.verified.append,
                                 PROTOCOL_QOS)
        node.create_subscription(RequestStats, topics.REQUEST_STATS, self.stats.append,
                                 PROTOCOL_QOS)
        node.create_subscription(Verdict, topics.VERDICT,
                                 lambda v: self.verdicts.append((time.monotonic(), v)),
                                 PROTOCOL_QOS)
        self.image_pub = node.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
        self.instruction_pub = node.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
        self.jpeg = jpeg
        self._stop = threading.Event()
        self._camera = threading.Thread(target=self._publish_frames, daemon=True)
        if jpeg is not None:
            self._camera.start()

    def _publish_frames(self):
        while not self._stop.wait(0.05):
            msg = CompressedImage(format="jpeg", data=self.jpeg)
            msg.header.stamp = self.graph.node.get_clock().now().to_msg()
            self.image_pub.publish(msg)

    def instruct(self, text: str) -> None:
        self.graph.wait_for(lambda: self.instruction_pub.get_subscription_count() > 0, 20,
                            "the edge to subscribe to instructions")
        time.sleep(0.3)                       # a first frame reaches the edge
        self.instruction_pub.publish(String(data=text))

    def request_id(self, nth: int):
        """The id of the robot's nth request (1-based, in the order its tokens arrived):
        edges draw ids from a random boot nonce, so tests count requests instead."""
        ids = list(dict.fromkeys(m.request_id for m in self.verified))
        return ids[nth - 1] if len(ids) >= nth else None

    def chunks(self, nth: int) -> list[VerifiedTokens]:
        request_id = self.request_id(nth)
        return sorted((m for m in self.verified if m.request_id == request_id),
                      key=lambda m: m.seq)

    def tokens(self, nth: int) -> list[int]:
        return [t for m in self.chunks(nth) for t in m.token_ids]

    def text(self, nth: int) -> str:
        return "".join(m.text_delta for m in self.chunks(nth))

    def finished(self, nth: int) -> bool:
        return any(m.final for m in self.chunks(nth))

    def close(self):
        self._stop.set()
        if self._camera.is_alive():
            self._camera.join()


def start_cloud(graph, config_dir, model, exit_layer=1):
    process = graph.start_node(VERIFIER, {"target_model": str(model)},
                               {"dtype": "fp64", "exit_layers": [exit_layer]}, config_dir)
    graph.wait_for_log(process, "ready:")
    return process


def start_edge(graph, config_dir, model, **params):
    process = graph.start_node(EDGE, {"draft_model": str(model)},
                               {"dtype": "fp64", "max_frame_age_at_decision_s": 5.0,
                                "max_new_tokens": MAX_NEW_TOKENS, **params}, config_dir)
    graph.wait_for_log(process, "ready:")
    return process


