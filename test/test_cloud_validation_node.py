"""The installed cloud node answers crash inputs over ROS and keeps serving, alone and in the
`cloud_site` process with its bridge (the launch files' layout): the same process
(same PID) refuses a garbage image and an out-of-vocabulary block with DecodeError
BAD_REQUEST within a bound, then decodes a good request exactly as the target alone does.
A bad parameter (an exit layer beyond the model) ends it at startup with one line."""
from __future__ import annotations

import random
import time

import pytest
from tiny_models import INSTRUCTION, jpeg_frame, reference_greedy, save_tiny_vlm

from spec_vlm_control import graphs, topics
from spec_vlm_control.core.models.loading import load_model
from spec_vlm_control.core.prefix import prefix_hash
from spec_vlm_control.core.protocol import (MODES, DecodeError, DecodeRequest, DecodingParams,
                                            DraftBlock, Handshake)
from spec_vlm_control.msg import CommittedTokens
from spec_vlm_control.msg import DecodeError as DecodeErrorMsg
from spec_vlm_control.msg import DecodeRequest as DecodeRequestMsg
from spec_vlm_control.msg import DraftBlock as DraftBlockMsg
from spec_vlm_control.nodes.common import PROTOCOL_QOS
from spec_vlm_control.nodes.convert import to_ros
from spec_vlm_control.processes import free_port

MAX_NEW_TOKENS = 8
ANSWER_BOUND_S = 0.5


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp("target"), seed=3)


@pytest.mark.parametrize("site", [False, True], ids=["alone", "cloud_site"])
def test_cloud_node_answers_crash_inputs_and_keeps_serving(cloud_graph, config_dir, tiny_target,
                                                           site):
    graph = cloud_graph
    if site:
        cloud = graph.start_node(graphs.CLOUD_SITE, {
            "target_model": str(tiny_target), "listen_endpoint": f"tcp/127.0.0.1:{free_port()}"},
            {"cloud": {"dtype": "fp64"}}, config_dir=config_dir, timeout=60)
    else:
        cloud = graph.start("cloud", config_dir / "cloud.yaml",
                            params={"model": str(tiny_target), "dtype": "fp64"})
    graph.wait_for_log(cloud, "ready:")
    pid = cloud.popen.pid
    loaded = load_model(str(tiny_target), dtype="fp64")
    errors, committed = [], []
    node = graph.node
    node.create_subscription(DecodeErrorMsg, topics.ERROR,
                             lambda m: errors.append((time.monotonic(), m)), PROTOCOL_QOS)
    node.create_subscription(CommittedTokens, topics.COMMITTED, committed.append, PROTOCOL_QOS)
    requests = node.create_publisher(DecodeRequestMsg, topics.REQUEST, PROTOCOL_QOS)
    drafts = node.create_publisher(DraftBlockMsg, topics.DRAFT, PROTOCOL_QOS)
    graph.wait_for(lambda: requests.get_subscription_count() and drafts.get_subscription_count()
                   and node.count_publishers(topics.ERROR), 20, "the cloud's protocol topics")
    jpeg = jpeg_frame(seed=4)

    def request(request_id: int, image: bytes, mode: str) -> DecodeRequest:
        return DecodeRequest("go2", request_id, INSTRUCTION, image, "jpeg",
                             DecodingParams(MODES[mode], 3, MAX_NEW_TOKENS),
                             Handshake(tokenizer_hash=loaded.fingerprint), stamp_ns=1)

    def answered(request_id: int, message) -> tuple[float, object]:
        sent = time.monotonic()
        (drafts if isinstance(message, DraftBlock) else requests).publish(to_ros(message))
        graph.wait_for(lambda: any(m.request_id == request_id for _, m in errors), 10,
                       f"the error answering request {request_id}")
        arrived, error = next((t, m) for t, m in errors if m.request_id == request_id)
        return arrived - sent, error

    garbage = random.Random(0).randbytes(1024)
    delay, error = answered(1, request(1, garbage, "plain"))
    assert error.code == DecodeError.CODE_BAD_REQUEST and "not a JPEG or PNG" in error.reason
    assert delay < ANSWER_BOUND_S
    print(f"garbage image answered in {delay * 1e3:.1f} ms")

    requests.publish(to_ros(request(2, jpeg, "plain")))
    oov = loaded.adapter.vocab_size + 10
    delay, error = answered(2, DraftBlock("go2", 2, 1, 0, prefix_hash([]), [5, oov]))
    assert error.code == DecodeError.CODE_BAD_REQUEST and f"{oov} outside" in error.reason
    assert delay < ANSWER_BOUND_S
    print(f"out-of-vocabulary block answered in {delay * 1e3:.1f} ms")

    requests.publish(to_ros(request(3, jpeg, "cloud_led")))        # the cloud decodes alone
    graph.wait_for(lambda: any(m.request_id == 3 and m.finished for m in committed), 60,
                   "the good request's last committed tokens")
    chunks = sorted((m for m in committed if m.request_id == 3), key=lambda m: m.start)
    tokens = [t for m in chunks for t in m.tokens]
    assert tokens == reference_greedy(tiny_target, INSTRUCTION, jpeg, MAX_NEW_TOKENS)[0]
    assert cloud.alive() and cloud.popen.pid == pid
    assert not [m for _, m in errors if m.request_id == 3]
    assert "Traceback" not in cloud.log()


def test_exit_layers_beyond_the_target_end_the_node_with_one_line(cloud_graph, config_dir,
                                                                  tiny_target):
    cloud = cloud_graph.start("cloud", config_dir / "cloud.yaml", wait=False,
                              params={"model": str(tiny_target), "dtype": "fp64",
                                      "exit_layers": "[99]"})
    assert cloud.popen.wait(60) == 1
    log = cloud.log()
    assert "parameter 'exit_layers' = [99]: must be below 3" in log, log
    assert "Traceback" not in log
