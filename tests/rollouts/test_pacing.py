"""The engine's pacing rules (``services.rollouts.pacing``): pure functions of an explicit ``now``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgefleet.server.services.rollouts.pacing import (
    CLOCK_SKEW_TOLERANCE_S,
    evaluation_due,
    next_tick_delay,
)

NOW = datetime(2026, 12, 6, 1, 0, tzinfo=timezone.utc)


def test_a_rollout_never_evaluated_is_due() -> None:
    assert evaluation_due(None, NOW, 1.0)


def test_a_rollout_evaluated_less_than_a_tick_ago_is_skipped_and_due_once_a_tick_passed() -> None:
    assert not evaluation_due(NOW - timedelta(seconds=0.4), NOW, 1.0)
    assert not evaluation_due(NOW, NOW, 1.0)
    assert evaluation_due(NOW - timedelta(seconds=1.0), NOW, 1.0)
    assert evaluation_due(NOW - timedelta(minutes=5), NOW, 1.0)


def test_a_stamp_slightly_ahead_is_recent_and_one_far_ahead_does_not_hold_evaluations_back() -> None:
    # the other replica took its ``now`` a little later, then held the lock while this one waited for it
    assert not evaluation_due(NOW + timedelta(seconds=2), NOW, 1.0)
    # a clock stepped back (or a replica's far ahead): evaluations go on
    assert evaluation_due(NOW + timedelta(seconds=CLOCK_SKEW_TOLERANCE_S + 1), NOW, 1.0)


def test_no_interval_means_every_tick_evaluates() -> None:
    assert evaluation_due(NOW, NOW, 0.0)


def test_the_next_tick_waits_a_tick_or_long_enough_to_keep_the_busy_share() -> None:
    assert next_tick_delay(1.0, 0.05, 0.2) == 1.0
    assert next_tick_delay(1.0, 0.5, 0.2) == pytest.approx(2.0)
    # busy d, idle 4 d: a 3 s tick is followed by 12 s of rest, 20 % of the time busy
    delay = next_tick_delay(1.0, 3.0, 0.2)
    assert delay == pytest.approx(12.0)
    assert 3.0 / (3.0 + delay) == pytest.approx(0.2)
    assert next_tick_delay(1.0, 3.0, 1.0) == 1.0
    assert next_tick_delay(1.0, -1.0, 0.2) == 1.0


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_busy_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError):
        next_tick_delay(1.0, 1.0, share)
