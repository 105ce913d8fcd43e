"""Co-located sites (graphs.Colocated, colocated.py): the edge or the cloud with its bridge
in one process (the default layout: robot.launch.py, cloud.launch.py, `spec-vlm demo`;
`spec-vlm bench-link --layouts site`); each node keeps its own YAML sections, order of files
and parameters."""
import subprocess
import threading
import time

import pytest
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header, String
from tiny_models import INSTRUCTION, jpeg_frame, save_tiny_vlm

from spec_vlm_control import graphs, topics
from spec_vlm_control.msg import DecodeRequest, RequestStats
from spec_vlm_control.nodes.common import PROTOCOL_QOS, SENSOR_QOS
from spec_vlm_control.nodes.convert import stamp_ns
from spec_vlm_control.processes import CONFIG, EXECUTABLES, free_port, ros_env


def test_the_launch_files_and_the_demo_put_each_model_node_with_its_bridge():
    separate = {"robot": graphs.ROBOT_SEPARATE_GRAPH, "cloud": graphs.CLOUD_SEPARATE_GRAPH}
    for graph, sites in ((graphs.ROBOT_GRAPH, [["edge", "bridge"]]),
                         (graphs.CLOUD_GRAPH, [["cloud", "bridge"]]),
                         (graphs.DEMO_GRAPH, [["edge", "bridge"], ["cloud", "bridge"]])):
        assert [[n.executable for n in p.members] for p in graph.processes
                if isinstance(p, graphs.Colocated)] == sites
        if graph.name in separate:   # the same nodes as the separate layout's, fewer processes
            assert sorted(graph.nodes, key=repr) == sorted(separate[graph.name].nodes, key=repr)
    assert graphs.CLOUD_SITE.respawn                        # the verifier's respawn, kept


def test_each_member_reads_its_own_files_in_its_own_order():
    site = graphs.Colocated("robot_site", (graphs.DEMO_EDGE,
                                           graphs.ROBOT_BRIDGE.reading(graphs.DEMO_OVERLAY)))
    # demo.yaml overrides bridge_robot.yaml for the bridge as it does edge.yaml for the edge
    assert site.files == ("edge.yaml", "bridge_robot.yaml", "demo.yaml")
    assert graphs.CLOUD_SITE.files == ("cloud.yaml", "bridge_cloud.yaml")


def test_parameters_set_per_executable_reach_each_member_and_conflicts_are_refused():
    site = graphs.ROBOT_SITE
    assert site.share({"edge": {"mode": "plain"}, "bridge": {"mode": "peer"}, "cloud": {}}) \
        == {"edge": {"mode": "plain"}, "bridge": {"mode": "peer"}}
    assert site.params["robot_id"] is graphs.ROBOT_ID
    clash = graphs.Colocated("robot_site", (graphs.EDGE.reading(mode="plain"),
                                            graphs.ROBOT_BRIDGE.reading(mode="peer")))
    with pytest.raises(ValueError, match="'mode' differs"):
        clash.params


@pytest.mark.slow
def test_a_site_that_cannot_build_a_node_says_why_in_one_line_and_exits_1(domain_id):
    """The bridge is built, the edge is refused (no model): the bridge is closed again and
    the process ends as a lone node does, parameters reaching each node by its name."""
    run = subprocess.run(
        [str(EXECUTABLES / "robot_site"), "--ros-args",
         "--params-file", str(CONFIG / "edge.yaml"),
         "--params-file", str(CONFIG / "bridge_robot.yaml"),
         "-p", "edge:model:=''", "-p", "bridge:mode:=peer", "-p", "edge:mode:=plain"],
        env=ros_env(domain_id), capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "robot bridge: peer" in run.stdout + run.stderr      # the bridge was up
    (error,) = [line for line in run.stderr.splitlines() if "error:" in line]
    assert error == "robot_site: error: parameter 'model' is required (the draft model)"


@pytest.mark.slow
def test_a_site_with_a_bad_switch_interval_says_so_in_one_line_and_exits_1(domain_id):
    run = subprocess.run(
        [str(EXECUTABLES / "cloud_site"), "--ros-args",
         "--params-file", str(CONFIG / "cloud.yaml"),
         "--params-file", str(CONFIG / "bridge_cloud.yaml")],
        env={**ros_env(domain_id), "SPEC_VLM_SWITCH_INTERVAL_MS": "fast"},
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stderr.strip() == ("cloud_site: error: SPEC_VLM_SWITCH_INTERVAL_MS: 'fast' is "
                                  "not a number of milliseconds")


@pytest.mark.slow
def test_the_robot_site_decides_on_the_frame_it_announced(ros_graph, tmp_path):
    """The demo's gate (nodes/demo_driver.py) against robot_site under its EventsExecutor:
    instruct once the edge announces (edge/frame) a frame captured after a moment; the
    edge then starts its decision on that frame or a newer one, never refusing it as older
    than max_frame_age_at_decision_s (at its 0.5 s default). The co-located demo once
    failed so (docs/latency.md); this is that path without the sim and the cloud."""
    node, clock = ros_graph.node, ros_graph.node.get_clock()
    announced, requests, refusals = [], [], []
    node.create_subscription(Header, topics.EDGE_FRAME,
                             lambda h: announced.append(stamp_ns(h.stamp)), SENSOR_QOS)
    node.create_subscription(DecodeRequest, topics.REQUEST, requests.append, PROTOCOL_QOS)
    node.create_subscription(RequestStats, topics.REQUEST_STATS,
                             lambda s: refusals.append(s.error)
                             if s.error.startswith("not started") else None, PROTOCOL_QOS)
    images = node.create_publisher(CompressedImage, topics.IMAGE, SENSOR_QOS)
    instructions = node.create_publisher(String, topics.INSTRUCTION, PROTOCOL_QOS)
    draft = save_tiny_vlm(tmp_path / "draft", seed=11, layers=2, hidden=32, heads=2,
                          kv_heads=1)
    site = ros_graph.start_node(graphs.ROBOT_SITE, {
        "draft_model": str(draft), "cloud_endpoint": f"tcp/127.0.0.1:{free_port()}"},
        {"edge": {"mode": "plain", "max_new_tokens": 4}}, timeout=120)
    ros_graph.wait_for_log(site, "ready:")
    jpeg, stop = jpeg_frame(), threading.Event()

    def camera():                                   # 10 Hz, stamped at publication
        while not stop.wait(0.1):
            frame = CompressedImage(format="jpeg", data=jpeg)
            frame.header.stamp = clock.now().to_msg()
            images.publish(frame)
    threading.Thread(target=camera, daemon=True).start()
    try:
        ros_graph.wait_for(lambda: instructions.get_subscription_count() > 0, 20,
                           "the edge to subscribe to instructions")
        for decision in range(1, 6):
            since = clock.now().nanoseconds
            ros_graph.wait_for(lambda: announced and announced[-1] >= since, 5,
                               "the edge to announce a frame captured after the gate opened")
            instructions.publish(String(data=INSTRUCTION))
            ros_graph.wait_for(lambda: len(requests) + len(refusals) >= decision, 20,
                               f"decision {decision} to start or be refused")
            assert not refusals, refusals
            assert stamp_ns(requests[-1].header.stamp) >= since
            time.sleep(0.3)
    finally:
        stop.set()
