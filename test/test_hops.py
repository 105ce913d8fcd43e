"""The hop timeline (spec_vlm_control/hops.py): records of separate processes merged into
one record per round trip, missing hops named, the overhead computed, nothing written when
off."""
import json

from spec_vlm_control import hops
from spec_vlm_control.core.protocol import DraftBlock, Verdict

MS = 1_000_000


def block(request=7, round_=3):
    return DraftBlock("go2", request, round_, assumed_length=2, assumed_hash=11, tokens=[5, 6])


def verdict(stage, request=7, round_=3):
    return Verdict("go2", request, round_, stage, exit_layer=6, assumed_length=2,
                   assumed_hash=11, block_length=2, accepted=2, next_token=9)


# ms from the previous point to each point after the edge's send: 1 ms a hop, 10 ms more in
# each bridge's delay line (the emulated one way), 2 ms queued behind the cloud's other work
# (the worker is free 2 ms after the block came), a 4 ms pass
DELAYS_MS = (1, 11, 1, 1, 1, 2, 1, 4, 1, 1, 11, 1, 1, 1)


def write_round_trip(folder, t0, skip=(), round_=3, idle_cloud=False):
    """One block's round trip as the four processes record it (the cloud records when its
    worker became free, long before the block came if `idle_cloud`). Returns its last time."""
    logs = {site: hops.HopLog(site, folder) for site in hops.SITES}
    messages = {"block": block(round_=round_),
                "final": verdict(Verdict.STAGE_FINAL, round_=round_)}
    t = t0
    for (kind, hop), delay in zip(hops.POINTS, (0,) + DELAYS_MS):
        t += delay * MS
        site, point = hop.split(".")
        stamp = t
        if point == "ready":
            point, stamp = "free", (t0 if idle_cloud else t)
        if (kind, hop) not in skip:
            logs[site].record(point, messages[kind], stamp)
    for log in logs.values():
        log.close()
    return t


def test_a_round_trip_merges_from_four_processes_into_its_hops_and_overhead(tmp_path):
    end = write_round_trip(tmp_path, 1_000 * MS)
    assert len(list(tmp_path.glob("*.jsonl"))) == 4          # one file per process
    (trip,) = hops.round_trips(hops.read_events(tmp_path))
    assert (trip.robot, trip.request, trip.round) == ("go2", 7, 3) and trip.complete
    assert trip.total_ns == end - 1_000 * MS
    segments = trip.segments_ns()
    assert list(segments) == list(hops.SEGMENTS)
    assert sum(segments.values()) == trip.total_ns
    assert trip.pass_ns() == 4 * MS
    # 20 ms of emulated delay, a 4 ms pass, 2 ms queued and 1 ms in each of the other 12 hops
    assert trip.queued_ns() == 2 * MS
    assert trip.total_ns == 38 * MS and trip.overhead_ns(emulated_rtt_ns=20 * MS) == 12 * MS
    summary = hops.summarize([trip], emulated_rtt_ms=20.0)
    assert summary["overhead"] == {"n": 1, "median_ms": 12.0, "p95_ms": 12.0}
    assert summary["segments"]["robot bridge up (+ emulated one way)"]["median_ms"] == 1.0
    assert summary["segments"]["zenoh up"]["across_sites"]
    assert not summary["missing_points"]


def test_a_block_that_finds_the_cloud_idle_queues_for_no_time(tmp_path):
    write_round_trip(tmp_path, 0, idle_cloud=True)
    (trip,) = hops.round_trips(hops.read_events(tmp_path))
    assert trip.queued_ns() == 0
    assert trip.segments_ns()["cloud wake-up"] == 3 * MS     # from the receipt to the pass


def test_a_missing_hop_is_named_and_its_round_trip_left_out_of_the_figures(tmp_path):
    write_round_trip(tmp_path, 0)
    write_round_trip(tmp_path, 100 * MS, skip={("final", "cloud_bridge.in")}, round_=4)
    write_round_trip(tmp_path, 200 * MS, skip={("final", "cloud.ready")}, round_=5)
    trips = hops.round_trips(hops.read_events(tmp_path))
    assert [t.round for t in trips] == [3, 4, 5]
    assert trips[1].missing == ["final cloud_bridge.in"] and not trips[1].complete
    assert trips[2].missing == ["final cloud.ready"] and trips[2].overhead_ns(0) is None
    assert "cloud -> cloud bridge (DDS)" not in trips[1].segments_ns()
    summary = hops.summarize(trips, emulated_rtt_ms=20.0)
    assert (summary["round_trips"], summary["complete"]) == (3, 1)
    assert summary["missing_points"] == {"final cloud_bridge.in": 1, "final cloud.ready": 1}
    assert summary["overhead"]["n"] == 1


def test_a_round_trip_without_its_final_verdict_has_no_overhead(tmp_path):
    write_round_trip(tmp_path, 0, skip={p for p in hops.POINTS if p[0] == "final"})
    (trip,) = hops.round_trips(hops.read_events(tmp_path))
    assert trip.total_ns is None and trip.overhead_ns(0) is None
    assert len(trip.missing) == len(hops.DOWN)


def test_a_resent_block_keeps_its_first_passage_and_early_verdicts_are_not_final(tmp_path):
    edge = hops.HopLog("edge", tmp_path)
    edge.record("send", block(), 5 * MS)
    edge.record("send", block(), 900 * MS)            # resent after resend_after_s
    edge.record("receive", verdict(Verdict.STAGE_EARLY), 30 * MS)
    edge.close()
    (trip,) = hops.round_trips(hops.read_events(tmp_path))
    assert trip.times == {("block", "edge.send"): 5 * MS}
    assert hops.kind_of(verdict(Verdict.STAGE_EARLY)) == "early"
    assert hops.kind_of(verdict(Verdict.STAGE_FINAL)) == "final"


def test_the_records_are_json_lines_and_a_torn_last_line_is_skipped(tmp_path):
    log = hops.HopLog("cloud", tmp_path)
    log.record("receive", block(), 42)
    log.close()
    (line,) = log.path.read_text().splitlines()
    assert json.loads(line) == {"hop": "cloud.receive", "robot": "go2", "request": 7,
                                "round": 3, "kind": "block", "t_ns": 42}
    with open(log.path, "a") as f:
        f.write('{"hop": "cloud.pass_st')             # a process killed mid-line
    assert len(hops.read_events(tmp_path)) == 1


def test_off_by_default_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(hops.ENV, raising=False)
    log = hops.open_log("edge")
    log.record("send", block())
    assert not log.enabled
    monkeypatch.setenv(hops.ENV, str(tmp_path / "hops"))
    on = hops.open_log("robot_bridge")
    on.record("in", block())
    on.close()
    assert [p.name.split("-")[0] for p in (tmp_path / "hops").iterdir()] == ["robot_bridge"]


def test_the_clouds_busy_time_per_request_sums_its_units_of_work(tmp_path):
    """Cloud-led decoding has no round trip per pass: the cloud records each unit of work a
    request took part in, and a cloud_led decision's software part is its live time less
    one emulated round trip and that busy time."""
    from spec_vlm_control.core.protocol import DecodeRequest, DecodingParams
    from spec_vlm_control.demo import timeline
    log = hops.HopLog("cloud", tmp_path)
    mine, other = DecodeRequest("go2", 7), DecodeRequest("go2", 8)
    units = ((mine, 10, 13), (other, 13, 20), (mine, 20, 24), (mine, 30, 31))
    for request, start, end in units + units[2:]:    # a request recorded again: counted once
        log.record("busy_start", request, start * MS)
        log.record("busy_end", request, end * MS)
    log.record("busy_start", other, 40 * MS)                      # still running: not summed
    log.close()
    assert hops.busy_ns(hops.read_events(tmp_path)) == {("go2", 7): 8 * MS, ("go2", 8): 7 * MS}
    recorded = timeline.by_request(tmp_path)
    assert recorded[7].busy_ns == 8 * MS and recorded[7].trips == []
    stats = dict(ok=True, mode=DecodingParams.MODE_CLOUD_LED, total_s=0.1, draft_s=0.03)
    found = timeline.decision(recorded[7], stats, rtt_ms=50.0)
    assert found["busy_ms"] == 8.0 and found["software_ms"] == 100.0 - 50.0 - 8.0
    assert timeline.decision(None, stats, rtt_ms=50.0)["software_ms"] is None  # not recorded


def test_a_units_work_after_the_requests_last_message_is_off_its_path(tmp_path):
    """A unit that sent the request's last chunk and went on (other sessions' rows, its
    bookkeeping, a thread waiting for a core) counts only up to that send: otherwise the
    busy time could exceed the live time less the round trip (measured once: -10.8 ms)."""
    from spec_vlm_control.core.protocol import CommittedTokens, DecodeRequest
    log = hops.HopLog("cloud", tmp_path)
    request = DecodeRequest("go2", 7)
    for start, end in ((10, 13), (20, 40)):
        log.record("busy_start", request, start * MS)
        log.record("busy_end", request, end * MS)
    log.record("send", CommittedTokens("go2", 7, 0, [5], 0, finished=True), 25 * MS)
    log.close()
    assert hops.busy_ns(hops.read_events(tmp_path)) == {("go2", 7): (3 + 5) * MS}
