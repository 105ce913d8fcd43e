"""The live baseline's choices without ROS: the ABBA order over decisions, and the baseline
as core/decode.py's `stream` with the decision's own sampling and edge timers."""
from spec_vlm_control.core.decode import mode_setup
from spec_vlm_control.core.edge import EdgeConfig
from spec_vlm_control.core.protocol import MODES, DecodingParams
from spec_vlm_control.live_baseline import baseline_first, baseline_setup


def test_the_order_alternates_abba_over_decisions():
    assert [baseline_first(n) for n in range(8)] == [False, True, True, False] * 2


def test_the_baseline_is_cloud_only_streaming_of_the_same_decision():
    params = DecodingParams(MODES["preemptive"], 4, 20, 0.7, 0.9, 5)
    got, config = baseline_setup(params, EdgeConfig(resend_after_s=2.0, deadline_s=3.0))
    stream, stream_config = mode_setup("stream", 4, 20)
    assert (got.mode, got.block_size, config.drafting) == (stream.mode, stream.block_size,
                                                           stream_config.drafting)
    assert got.mode == MODES["cloud_led"] and not config.drafting
    assert (got.max_new_tokens, got.temperature, got.top_p, got.seed) == (20, 0.7, 0.9, 5)
    assert (config.resend_after_s, config.deadline_s) == (2.0, 3.0)
