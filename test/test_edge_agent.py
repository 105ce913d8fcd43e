"""The edge agent's decisions on a fake clock, without ROS: triggers, the frame gate, the
text-only stamp and when link_failed goes true and false."""
from dataclasses import replace

import cv2
import numpy as np
import pytest

from spec_vlm_control.core.metrics import RequestStats
from spec_vlm_control.core.protocol import PlanStatus, RequestIds
from spec_vlm_control.edge_agent import AgentConfig, Decision, EdgeAgent, Refusal

S = 10**9
T0 = 1_700_000_000 * S          # the edge's clock at the start of each test
JPEG = cv2.imencode(".jpg", np.full((32, 48, 3), 128, np.uint8))[1].tobytes()
CONFIG = AgentConfig(trigger="instruction", use_image=True, max_frame_age_at_decision_s=0.5,
                     max_clock_skew_s=0.05, max_image_bytes=4_000_000,
                     max_image_pixels=4_000_000)


class Edge:
    """An agent, the link_failed values it published, and the node's part of a request."""

    def __init__(self, **config):
        self.links: list[bool] = []
        self.agent = EdgeAgent(replace(CONFIG, **config), self.links.append, RequestIds(7))

    def act(self, decision):
        """What the node does with a decision: end the request in flight, start this one."""
        if isinstance(decision, Decision):
            if self.agent.in_flight:
                self.end(ok=False, cancelled=True)
            self.agent.start(decision)
        return decision

    def answer(self, final=True):
        self.agent.chunk_verified(self.agent.current, final)

    def end(self, ok=True, cancelled=False):
        return self.agent.ended(RequestStats(request_id=self.agent.current, ok=ok, tokens=3,
                                             error="" if ok else "deadline"), cancelled)


def test_a_decision_uses_the_last_good_frame_and_its_stamp():
    edge = Edge()
    assert edge.agent.on_frame("good", T0 - S // 10, JPEG, T0) is None
    assert edge.agent.on_frame("cut", T0, JPEG[: len(JPEG) // 2], T0)   # undecodable
    decision = edge.act(edge.agent.on_instruction("  go to the red ball ", T0))
    assert decision == Decision((7 << 32) | 1, "instruction", "go to the red ball", "good",
                                T0 - S // 10)
    assert edge.agent.bad_frames == 1


@pytest.mark.parametrize("stamp_ns, error", [
    (0, "stamp 0.000000000 is not a capture time"),
    (-S + 5, "stamp -1.000000005 is not a capture time"),
    (T0 + S // 10, "stamped 0.100 s in the future (max_clock_skew_s 0.05)"),
])
def test_frames_with_impossible_stamps_are_dropped_and_counted(stamp_ns, error):
    edge = Edge()
    assert edge.agent.on_frame("bad", stamp_ns, JPEG, T0) == error
    assert (edge.agent.bad_frames, edge.agent.last_bad_frame, edge.agent.frame) == (1, error, None)


def test_frames_too_large_are_dropped_before_they_are_decoded():
    edge = Edge(max_image_bytes=len(JPEG) - 1)
    assert "more than max_image_bytes" in edge.agent.on_frame("big", T0, JPEG, T0)


def test_a_decision_without_a_fresh_frame_is_refused_saying_why():
    edge = Edge()
    assert edge.agent.on_instruction("sit", T0) == Refusal(
        (7 << 32) | 1, "instruction", "no usable camera frame younger than 0.5 s")
    edge.agent.on_frame("old", T0, JPEG, T0)
    edge.agent.on_frame("cut", T0, b"\xff\xd8", T0)
    refusal = edge.agent.on_instruction("sit", T0 + S * 6 // 10)
    assert refusal.request_id == (7 << 32) | 2       # a refused decision uses up its id
    assert refusal.why == ("no usable camera frame younger than 0.5 s (1 bad frames dropped, "
                           f"the last: {edge.agent.last_bad_frame})")
    assert edge.agent.refusal == refusal.why and not edge.agent.in_flight
    edge.act(edge.agent.on_instruction("sit", T0 + S // 2))   # exactly at the age limit
    assert edge.agent.refusal == "" and edge.agent.in_flight


def test_no_instruction_no_decision():
    edge = Edge(trigger="periodic")
    edge.agent.on_frame("good", T0, JPEG, T0)
    assert edge.agent.on_period(T0) is None
    assert edge.agent.on_instruction("   ", T0) is None


def test_text_only_requests_carry_the_instruction_arrival_and_ignore_frames():
    edge = Edge(use_image=False)
    # A frame that happens to be present (and is stale): neither checked, kept nor sent.
    assert edge.agent.on_frame("frame", T0 - 5 * S, b"not an image", T0) is None
    assert edge.agent.bad_frames == 0 and edge.agent.frame is None
    decision = edge.act(edge.agent.on_instruction("turn left", T0 + 3 * S))
    assert decision.frame is None and decision.stamp_ns == T0 + 3 * S


def test_periodic_ticks_wait_for_the_request_in_flight():
    """Before, every tick cancelled a decision longer than period_s: none ever finished."""
    edge = Edge(trigger="periodic")
    edge.agent.on_frame("frame", T0, JPEG, T0)
    first = edge.act(edge.agent.on_instruction("explore", T0))
    for tick in range(1, 4):                        # a decision of 3+ periods
        edge.agent.on_frame("frame", T0 + tick * S, JPEG, T0 + tick * S)
        assert edge.agent.on_period(T0 + tick * S) is None
    assert edge.agent.current == first.request_id
    edge.answer()
    assert edge.end().ok
    edge.agent.on_frame("frame", T0 + 4 * S, JPEG, T0 + 4 * S)
    second = edge.act(edge.agent.on_period(T0 + 4 * S))
    assert isinstance(second, Decision) and second.reason == "period"
    assert edge.links == [False]


def test_plan_finished_fires_once_per_finished_of_the_current_request():
    edge = Edge(trigger="plan_finished")
    edge.agent.on_frame("frame", T0, JPEG, T0)
    first = edge.act(edge.agent.on_instruction("fetch", T0))
    edge.answer()
    edge.end()
    # Other statuses and other requests' FINISHED do not trigger.
    assert edge.agent.on_plan_status(first.request_id, PlanStatus.STARTED, T0) is None
    assert edge.agent.on_plan_status(first.request_id + 99, PlanStatus.FINISHED, T0) is None
    # The decision after FINISHED is refused (the frame is too old); a duplicate FINISHED
    # does not ask again.
    refused = edge.agent.on_plan_status(first.request_id, PlanStatus.FINISHED, T0 + S)
    assert isinstance(refused, Refusal) and refused.reason == "plan finished"
    assert edge.agent.on_plan_status(first.request_id, PlanStatus.FINISHED, T0 + S) is None
    edge.agent.on_frame("frame", T0 + S, JPEG, T0 + S)
    assert edge.agent.on_plan_status(first.request_id, PlanStatus.FINISHED, T0 + S) is None
    # The next request's FINISHED does.
    second = edge.act(edge.agent.on_instruction("fetch", T0 + S))
    edge.answer()
    edge.end()
    assert isinstance(edge.agent.on_plan_status(second.request_id, PlanStatus.FINISHED,
                                                T0 + S), Decision)


def test_trigger_instruction_ignores_plan_status_and_ticks():
    edge = Edge()
    edge.agent.on_frame("frame", T0, JPEG, T0)
    first = edge.act(edge.agent.on_instruction("sit", T0))
    assert edge.agent.on_plan_status(first.request_id, PlanStatus.FINISHED, T0) is None
    assert edge.agent.on_period(T0) is None


def test_link_failed_goes_true_on_a_failure_and_false_before_the_next_answer():
    edge = Edge()
    edge.agent.on_frame("frame", T0, JPEG, T0)
    edge.act(edge.agent.on_instruction("sit", T0))
    assert not edge.end(ok=False).ok
    assert edge.links == [False, True] and edge.agent.link_failed
    assert edge.end() is None                       # reported once
    edge.act(edge.agent.on_instruction("sit", T0))
    assert edge.links == [False, True]              # still failed until an answer comes
    edge.answer(final=False)
    edge.answer(final=True)
    assert edge.links == [False, True, False]
    assert edge.end().ok


def test_an_answer_cut_before_its_final_chunk_fails_and_ends_the_plan():
    edge = Edge()
    edge.agent.on_frame("frame", T0, JPEG, T0)
    edge.act(edge.agent.on_instruction("sit", T0))
    edge.answer(final=False)
    stats = edge.end(ok=True)
    assert not stats.ok and stats.error == "answer ended after 3 tokens without its final chunk"
    assert edge.links == [False, True]


def test_a_cancelled_request_leaves_the_plan_to_the_next_one():
    edge = Edge()
    edge.agent.on_frame("frame", T0, JPEG, T0)
    edge.act(edge.agent.on_instruction("sit", T0))
    edge.act(edge.agent.on_instruction("stand", T0))   # cancels the first
    assert edge.links == [False]


@pytest.mark.parametrize("final, links", [(False, [False, True]), (True, [False])])
def test_shutdown_ends_a_plan_whose_final_chunk_has_not_gone_out(final, links):
    edge = Edge()
    edge.agent.on_frame("frame", T0, JPEG, T0)
    edge.act(edge.agent.on_instruction("sit", T0))
    edge.answer(final=final)
    edge.agent.shutdown()
    assert edge.links == links


def test_chunks_of_another_request_change_nothing():
    edge = Edge()
    edge.agent.on_frame("frame", T0, JPEG, T0)
    first = edge.act(edge.agent.on_instruction("sit", T0))
    edge.end(ok=False)
    edge.act(edge.agent.on_instruction("sit", T0))
    edge.agent.chunk_verified(first.request_id, True)
    assert edge.links == [False, True] and not edge.agent.final_sent
