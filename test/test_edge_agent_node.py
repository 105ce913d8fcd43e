"""A text-only edge (`use_image: false`) in a running graph: the stale frame a camera happens
to publish is neither sent nor used for the stamp, and the controller does not reject the
plan as decided on a frame too old (before, the request carried the frame's stamp, or 0
without a camera, and every plan was rejected)."""
import time

from robot_site import MAX_NEW_TOKENS
from test_edge_hardening import Site, tiny_target  # noqa: F401  (a fixture)
from tiny_models import jpeg_frame

S = 10**9


def test_a_text_only_decision_carries_the_instruction_time_and_runs(ros_graph, config_dir,
                                                                   tiny_target):  # noqa: F811
    site = Site(ros_graph)
    site.spoof_finished = False
    model = {"model": str(tiny_target), "dtype": "fp64"}
    edge = ros_graph.start("edge", config_dir / "edge.yaml", wait=False, params={
        **model, "use_image": False, "mode": "plain", "block_size": 2,
        "max_new_tokens": MAX_NEW_TOKENS})
    cloud = ros_graph.start("cloud", config_dir / "cloud.yaml", params=model, wait=False)
    # A generous start limit keeps a busy CI machine from failing the plan; the stale frame
    # below is older than it.
    controller = ros_graph.start("controller", config_dir / "controller.yaml", wait=False,
                                 params={"max_frame_age_at_start_s": 10.0})
    for process, line in ((edge, "ready:"), (cloud, "ready:"), (controller, "controller ready")):
        ros_graph.wait_for_log(process, line)
    ros_graph.wait_for(lambda: site.image_pub.get_subscription_count() > 0
                       and site.instruction_pub.get_subscription_count() > 0, 20,
                       "the edge's subscriptions")
    site.frame(jpeg_frame(seed=4), ahead_s=-30.0)   # a valid frame, 30 s old
    time.sleep(0.2)
    asked_ns = ros_graph.node.get_clock().now().nanoseconds
    site.instruct()
    stats = site.wait_stats(1)
    assert stats.ok, stats.error
    assert {r.request_id for r in site.requests} == {stats.request_id}   # (resent, maybe)
    request = site.requests[0]
    assert not request.image.data and not request.image.format
    stamp_ns = request.header.stamp.sec * S + request.header.stamp.nanosec
    assert asked_ns <= stamp_ns <= asked_ns + 2 * S
    chunks = site.of("chunk", request.request_id)
    assert chunks and chunks[-1].final
    assert {(c.header.stamp.sec, c.header.stamp.nanosec) for c in chunks} == \
        {(request.header.stamp.sec, request.header.stamp.nanosec)}
    ros_graph.wait_for(lambda: site.of("plan", request.request_id), 10,
                       "the controller's verdict on the plan")
    details = [p.detail for p in site.of("plan", request.request_id)]
    assert not any(d.startswith(("frame too old", "invalid frame stamp")) for d in details), \
        details
