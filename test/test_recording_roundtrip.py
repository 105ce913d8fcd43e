"""Recorder round trip: bags written with `rosbags` read back with `rosbags` and with rclpy's
own CDR (custom types of this package included), in MCAP and sqlite3."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from spec_vlm_control.camera.frame import encode_jpeg
from spec_vlm_control.msg import DecodeRequest, DraftBlock, Verdict, VerifiedTokens
from spec_vlm_control.recording import Recorder, bag_topics, package_typestore, read_bag


def request(i):
    msg = DecodeRequest(robot_id="go2-a", request_id=i, instruction=f"go to the red ball {i}")
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + i, 5
    rgb = np.full((8, 8, 3), 10 * i, np.uint8)
    msg.image.format, msg.image.data = "jpeg", encode_jpeg(rgb, 90)
    msg.params.mode, msg.params.block_size, msg.params.temperature = 2, 4, 0.0
    msg.handshake.protocol_version, msg.handshake.tokenizer_hash = 3, "abc"
    return msg


def run_messages():
    """One request's worth of protocol traffic, as rclpy messages, in log order."""
    out = []
    for i in range(3):
        t = 1_000_000_000 * (i + 1)
        out.append(("/edge/request", "spec_vlm_control/msg/DecodeRequest", request(i), t))
        out.append(("/edge/instruction", "std_msgs/msg/String", String(data=f"stop {i}"), t + 1))
        out.append(("/edge/draft", "spec_vlm_control/msg/DraftBlock",
                    DraftBlock(robot_id="go2-a", request_id=i, round=1, assumed_length=2,
                               assumed_hash=2**63 + i, tokens=[5, 6, -7], support_sizes=[]),
                    t + 2))
        out.append(("/edge/verdict", "spec_vlm_control/msg/Verdict",
                    Verdict(request_id=i, stage=1, accepted=2, next_token=9, confidence=1.0,
                            finished=i == 2), t + 3))
        out.append(("/edge/verified", "spec_vlm_control/msg/VerifiedTokens",
                    VerifiedTokens(request_id=i, seq=0, token_ids=[5, 6, 9],
                                   text_delta="forward 1.0", final=True), t + 4))
    return out


@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_recorded_run_reads_back_with_rclpy_and_rosbags(tmp_path, storage, suffix):
    messages = run_messages()
    bag = tmp_path / "run"
    with Recorder(bag, storage=storage) as recorder:
        for topic, msgtype, msg, stamp in messages:
            recorder.write(topic, msgtype, serialize_message(msg), stamp)
    assert list(bag.glob(f"*{suffix}")), f"no {suffix} file in {list(bag.iterdir())}"
    assert bag_topics(bag)["/edge/request"] == "spec_vlm_control/msg/DecodeRequest"

    read = list(read_bag(bag))
    assert [(m.topic, m.stamp_ns) for m in read] == [(t, s) for t, _, _, s in messages]
    for (topic, msgtype, original, _), record in zip(messages, read):
        assert deserialize_message(record.data, type(original)) == original, topic
    # rosbags decodes the same bytes into its own objects, nested custom types included.
    first = read[0].decode()
    assert first.instruction == "go to the red ball 0" and first.params.block_size == 4
    assert first.handshake.tokenizer_hash == "abc" and first.header.stamp.sec == 100
    assert bytes(first.image.data) == bytes(messages[0][2].image.data)
    assert list(read[2].decode().tokens) == [5, 6, -7]


def test_rosbags_objects_are_recorded_and_topics_filtered(tmp_path):
    store = package_typestore()
    Verdict_ = store.types["spec_vlm_control/msg/Verdict"]
    bag = tmp_path / "objects"
    with Recorder(bag) as recorder:
        for i in range(4):
            v = Verdict_(robot_id="r", request_id=i, round=i, stage=0, exit_layer=3,
                         assumed_length=i, assumed_hash=i, block_length=4, accepted=i,
                         next_token=-1, confidence=0.5, finished=False, cloud_epoch=7)
            recorder.write("/verdict", "spec_vlm_control/Verdict", v, 10 + i)
            recorder.write("/text", "std_msgs/String", serialize_message(String(data=str(i))),
                           11 + i)
    verdicts = list(read_bag(bag, topics=["/verdict"]))
    assert [m.topic for m in verdicts] == ["/verdict"] * 4
    back = [deserialize_message(m.data, Verdict) for m in verdicts]
    assert [(v.request_id, v.accepted, v.exit_layer) for v in back] == [(i, i, 3) for i in range(4)]


def test_a_topic_keeps_its_type_and_an_existing_bag_is_not_overwritten(tmp_path):
    bag = tmp_path / "b"
    with Recorder(bag) as recorder:
        recorder.write("/t", "std_msgs/msg/String", serialize_message(String(data="a")), 1)
        with pytest.raises(ValueError, match="holds std_msgs/msg/String"):
            recorder.write("/t", "sensor_msgs/msg/CompressedImage",
                           serialize_message(CompressedImage()), 2)
    with pytest.raises(Exception, match="exists"):
        Recorder(bag)


def test_recorded_type_hashes_match_the_generated_interfaces(tmp_path):
    """`ros2 bag play` matches topics by RIHS01 hash: the bag must carry rosidl's own."""
    share = Path(sys.prefix) / "share" / "spec_vlm_control" / "msg"
    if not share.is_dir():
        pytest.fail(f"{share} missing: run through tools/dev test (installed package)")
    store = package_typestore()
    for json_path in sorted(share.glob("*.json")):
        name = f"spec_vlm_control/msg/{json_path.stem}"
        hashes = json.loads(json_path.read_text())["type_hashes"]
        expected = next(h["hash_string"] for h in hashes if h["type_name"] == name)
        assert store.hash_rihs01(name) == expected, name
