"""The degraded ladder's pure decisions: step down, reset, probe backoff, time per rung."""

from __future__ import annotations

import pytest

from edgefleet.agent.serve import ladder
from edgefleet.agent.serve.ladder import LadderPolicy

POLICY = LadderPolicy(failures_to_descend=3, probe_initial_s=5.0, probe_max_s=30.0)


def test_steps_down_only_after_consecutive_failures():
    state = ladder.enter(None, "preferred", POLICY, now=0.0)
    state, down = ladder.after_failure(state, POLICY)
    assert not down
    state, down = ladder.after_failure(state, POLICY)
    assert not down
    state = ladder.after_success(state)
    assert state.failures == 0
    for _ in range(2):
        state, down = ladder.after_failure(state, POLICY)
        assert not down
    state, down = ladder.after_failure(state, POLICY)
    assert down


def test_the_best_rung_schedules_no_probe_and_a_lower_one_does():
    top = ladder.enter(None, "preferred", POLICY, now=0.0)
    assert top.probe_at is None
    assert not ladder.probe_due(top, now=1e9)
    low = ladder.enter(top, "cpu", POLICY, now=10.0)
    assert low.probe_at == 15.0
    assert not ladder.probe_due(low, now=14.9)
    assert ladder.probe_due(low, now=15.0)


@pytest.mark.parametrize(("probes", "wait_s"), [(1, 10.0), (2, 20.0), (3, 30.0), (6, 30.0)])
def test_failed_probes_back_off_doubling_up_to_the_cap(probes, wait_s):
    state = ladder.enter(None, "fallback", POLICY, now=0.0)
    now = 0.0
    for _ in range(probes):
        now = state.probe_at
        state = ladder.after_probe(state, POLICY, now)
    assert state.probe_wait_s == wait_s
    assert state.probe_at == now + wait_s


def test_time_per_rung_adds_up_across_moves():
    state = ladder.enter(None, "preferred", POLICY, now=0.0)
    state = ladder.enter(state, "cpu", POLICY, now=10.0)
    state = ladder.enter(state, "rule", POLICY, now=12.5)
    state = ladder.enter(state, "preferred", POLICY, now=20.0)
    assert ladder.rung_times(state, now=21.0) == {"preferred": 11.0, "cpu": 2.5, "rule": 7.5}


def test_policy_refuses_nonsense():
    with pytest.raises(ValueError):
        LadderPolicy(failures_to_descend=0)
    with pytest.raises(ValueError):
        LadderPolicy(probe_initial_s=10, probe_max_s=5)
