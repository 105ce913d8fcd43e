"""The node processes' GIL switch interval (switch_interval.py): CPython's unless
SPEC_VLM_SWITCH_INTERVAL_MS sets another, a bad value refused with its name; and the
variants `spec-vlm bench-link --switch-intervals` compares."""
import pytest

from spec_vlm_control import switch_interval
from spec_vlm_control.commands import link_bench
from spec_vlm_control.core.user_errors import UserError


def test_the_nodes_keep_cpythons_interval_unless_the_environment_sets_one(monkeypatch):
    monkeypatch.delenv(switch_interval.ENV, raising=False)
    assert switch_interval.switch_interval_s() == pytest.approx(0.005)
    monkeypatch.setenv(switch_interval.ENV, "0.5")
    assert switch_interval.switch_interval_s() == pytest.approx(0.0005)


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1001", "nan"])
def test_a_bad_interval_is_refused_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(switch_interval.ENV, raw)
    with pytest.raises(ValueError, match=switch_interval.ENV):
        switch_interval.switch_interval_s()


def test_bench_link_names_the_interval_only_when_it_compares_several():
    assert link_bench.variant_names(["site"], ["events"], [5.0]) == \
        [("site events", "site", "events", 5.0)]
    assert [n for n, *_ in link_bench.variant_names(["separate", "site"], ["events"],
                                                    link_bench.switch_intervals("5,0.5"))] == \
        ["separate events 5 ms", "separate events 0.5 ms", "site events 5 ms",
         "site events 0.5 ms"]
    assert link_bench.switch_intervals(None) == [switch_interval.DEFAULT_MS]
    for bad in ("5,x", "0", ","):
        with pytest.raises(UserError, match="--switch-intervals"):
            link_bench.switch_intervals(bad)
