import random

import pytest

from edgefleet.agent.backoff import PollTiming, backoff_delay_s, poll_delay_s

T = PollTiming(poll_interval_s=30, poll_jitter=0.2, backoff_base_s=1, backoff_cap_s=60, min_delay_s=0.5)


@pytest.mark.parametrize(
    ("failures", "low", "high"), [(1, 0.5, 1), (2, 1, 2), (4, 4, 8), (7, 30, 60), (50, 30, 60)]
)
def test_backoff_grows_exponentially_under_the_cap(failures, low, high):
    rng = random.Random(1)
    delays = [backoff_delay_s(T, failures, rng) for _ in range(200)]
    assert min(delays) >= low
    assert max(delays) <= high
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not synchronized


def test_retry_after_is_a_floor_spread_over_one_more_window_and_capped():
    rng = random.Random(2)
    delays = [backoff_delay_s(T, 1, rng, retry_after_s=20) for _ in range(500)]
    assert 20 <= min(delays) < 21
    assert 39 < max(delays) <= 40
    assert len({round(d, 3) for d in delays}) > 400  # a fleet told "20 s" does not return in one second
    assert backoff_delay_s(T, 1, rng, retry_after_s=10_000) == 60
    assert backoff_delay_s(T, 1, rng, retry_after_s=45) <= 60


def test_no_configuration_hot_loops():
    zero = PollTiming(poll_interval_s=0, poll_jitter=0, backoff_base_s=0, backoff_cap_s=0, min_delay_s=0.05)
    rng = random.Random(3)
    assert poll_delay_s(zero, rng) >= 0.05
    assert backoff_delay_s(zero, 3, rng) >= 0.05


def test_poll_delay_is_jittered_around_the_interval():
    rng = random.Random(4)
    delays = [poll_delay_s(T, rng) for _ in range(500)]
    assert 24 <= min(delays) < 26
    assert 34 < max(delays) <= 36
