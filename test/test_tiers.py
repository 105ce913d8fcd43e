"""The test tiers: the busy-CPU helper of test/conftest.py runs beside slow and timing tests
only, so that the fast tier's pure tests keep both cores of a small machine."""
import pytest


def test_the_busy_cpu_is_off_for_a_pure_test(busy_cpu):
    assert busy_cpu.spinner is None


@pytest.mark.timing
def test_the_busy_cpu_runs_beside_a_timing_test(busy_cpu):
    assert busy_cpu.spinner is not None and busy_cpu.spinner.poll() is None


def test_the_busy_cpu_stops_when_the_timing_test_is_done(busy_cpu):
    assert busy_cpu.spinner is None
