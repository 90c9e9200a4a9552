"""The install state machine, transition by transition: pure functions of records, pointers, trial and now."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgefleet.agent.install import machine as sm
from edgefleet.agent.install.machine import Phase, Pointer, RollbackResume, SlotState
from edgefleet.agent.install.replay import RollbackIntent
from edgefleet.agent.install.trial import TrialPolicy, TrialState

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
V1, V2 = "v" * 64, "w" * 64


def ptr(version: str, artifact: str) -> Pointer:
    return Pointer(version, artifact, 1, T0.isoformat())


def trial(version: str = V2, attempt: str = "t2", **kw) -> TrialState:
    return TrialState(version=version, artifact_id="a2", attempt=attempt, started_at=T0.isoformat(), **kw)


def begin(attempt: str, version: str = V2, artifact: str = "a2") -> dict:
    return {"attempt": attempt, "event": "begin", "artifact_id": artifact, "version": version}


def intent(**kw) -> RollbackIntent:
    fields = dict(
        attempt="t2",
        reason="trial_failure_rate",
        from_version=V2,
        from_artifact="a2",
        to_version=V1,
        to_artifact="a1",
        count=True,
    )
    fields.update(kw)
    return RollbackIntent(**fields)


# the state type
@pytest.mark.parametrize(
    ("state", "wire"),
    [
        (sm.IDLE, "idle"),
        (sm.INSTALLING, "installing"),
        (sm.TRIAL, "trial"),
        (sm.COMMITTED, "committed"),
        (sm.failed("disk_full"), "failed:disk_full"),
        (sm.rolled_back("trial_watchdog"), "rolled_back:trial_watchdog"),
        (sm.kept("trial_failure_rate", "previous_corrupt"), "kept:trial_failure_rate:previous_corrupt"),
        (sm.kept("operator", "no_previous"), "kept:operator:no_previous"),
        (SlotState(Phase.REFUSED, "rolled_back"), "refused:rolled_back"),
        (sm.error("active_unusable"), "error:active_unusable"),
    ],
)
def test_each_state_has_one_wire_form(state: SlotState, wire: str) -> None:
    assert state.wire() == wire


def test_the_wire_form_is_bounded() -> None:
    assert len(sm.kept("x" * 80, "previous_corrupt").wire()) == 64


# apply
def apply(**kw) -> sm.ApplyDecision:
    args = dict(
        artifact_id="a2",
        version=V2,
        active=ptr(V1, "a1"),
        loaded=True,
        disabled=frozenset(),
        rejections=0,
        max_rollbacks=2,
    )
    args.update(kw)
    return sm.decide_apply(**args)


def test_a_new_assignment_begins_an_install() -> None:
    assert apply().action == "install"
    assert apply(active=None, loaded=False).action == "install"


def test_the_version_already_serving_is_kept() -> None:
    assert apply(active=ptr(V2, "a2")).action == "keep"


def test_the_active_version_not_loaded_is_installed_again() -> None:
    assert apply(active=ptr(V2, "a2"), loaded=False).action == "install"


def test_a_disabled_artifact_is_refused_or_rolled_back_when_active() -> None:
    refused = apply(disabled=frozenset({"a2"}))
    assert (refused.action, refused.state, refused.failure_code) == (
        "refuse",
        SlotState(Phase.REFUSED, "disabled"),
        "artifact_disabled",
    )
    assert refused.message == ""
    assert apply(active=ptr(V2, "a2"), disabled=frozenset({"a2"})).action == "rollback_disabled"


def test_an_artifact_rejected_max_rollbacks_times_is_refused() -> None:
    assert apply(rejections=1).action == "install"
    refused = apply(rejections=2)
    assert (refused.action, refused.state.wire(), refused.failure_code) == (
        "refuse",
        "refused:rolled_back",
        "release_refused_after_rollbacks",
    )
    assert "2 times" in refused.message


@pytest.mark.parametrize(
    ("step", "counts"),
    [("download", False), ("verify", False), ("stage", False), ("load", True), ("health", True)],
)
def test_only_the_candidates_own_failures_count(step: str, counts: bool) -> None:
    assert sm.failure_counts(step) is counts


# rollback
def test_a_rollback_goes_to_previous_with_the_trials_attempt() -> None:
    planned = sm.plan_rollback(
        reason="trial_watchdog",
        active=ptr(V2, "a2"),
        previous=ptr(V1, "a1"),
        trial_attempt="t2",
        count=True,
        attempt=None,
        fresh_attempt="fresh",
    )
    assert planned == intent(reason="trial_watchdog")


def test_a_rollback_without_previous_keeps_the_current_version() -> None:
    planned = sm.plan_rollback(
        reason="operator",
        active=ptr(V2, "a2"),
        previous=None,
        trial_attempt=None,
        count=False,
        attempt=None,
        fresh_attempt="fresh",
    )
    assert planned is None


def test_an_operator_rollback_gets_a_fresh_attempt_and_never_counts_without_active() -> None:
    planned = sm.plan_rollback(
        reason="operator",
        active=None,
        previous=ptr(V1, "a1"),
        trial_attempt=None,
        count=True,
        attempt=None,
        fresh_attempt="fresh",
    )
    assert planned is not None
    assert (planned.attempt, planned.count, planned.from_artifact) == ("fresh", False, "")


def test_a_resumed_rollback_keeps_its_attempt() -> None:
    planned = sm.plan_rollback(
        reason="trial_crashed",
        active=ptr(V2, "a2"),
        previous=ptr(V1, "a1"),
        trial_attempt=None,
        count=True,
        attempt="t2",
        fresh_attempt="fresh",
    )
    assert planned is not None
    assert planned.attempt == "t2"


def test_a_journaled_rollback_is_finished_redone_or_abandoned_by_the_pointers() -> None:
    decided = intent()
    assert sm.resume_rollback(decided, ptr(V1, "a1"), None) is RollbackResume.FINISH
    assert sm.resume_rollback(decided, ptr(V1, "a1"), ptr(V1, "a1")) is RollbackResume.FINISH
    assert sm.resume_rollback(decided, ptr(V2, "a2"), ptr(V1, "a1")) is RollbackResume.REDO
    assert sm.resume_rollback(decided, ptr(V2, "a2"), None) is RollbackResume.ABANDON
    assert sm.resume_rollback(decided, None, None) is RollbackResume.ABANDON
    assert sm.resume_rollback(decided, ptr("x" * 64, "a3"), ptr(V1, "a1")) is RollbackResume.ABANDON


# recovery
def test_an_attempt_cut_before_its_switch_is_interrupted() -> None:
    records = [begin("t2"), {"attempt": "t2", "event": "done", "step": "download"}]
    plan = sm.plan_recovery(records, ptr(V1, "a1"), None)
    assert (plan.interrupted, plan.switched, plan.committed, plan.clear_trial) == ("t2", False, False, False)


def test_an_attempt_cut_after_its_switch_is_on_trial() -> None:
    records = [begin("t2"), {"attempt": "t2", "event": "done", "step": "health"}]
    plan = sm.plan_recovery(records, ptr(V2, "a2"), trial())
    assert (plan.interrupted, plan.switched, plan.clear_trial) == (None, True, False)


def test_a_trial_record_after_a_journaled_commit_is_cleared() -> None:
    records = [begin("t2"), {"attempt": "t2", "event": "committed"}]
    plan = sm.plan_recovery(records, ptr(V2, "a2"), trial())
    assert (plan.committed, plan.clear_trial, plan.interrupted) == (True, True, None)


def test_a_trial_record_for_a_version_not_active_is_cleared() -> None:
    plan = sm.plan_recovery([begin("t2")], ptr(V1, "a1"), trial())
    assert plan.clear_trial
    assert sm.plan_recovery([], None, trial()).clear_trial


def test_a_journaled_rejection_is_counted_on_recovery() -> None:
    records = [begin("t2"), {"attempt": "t2", "event": "failed", "step": "health", "count": True}]
    assert sm.plan_recovery(records, ptr(V1, "a1"), None).rejection == ("a2", "t2")
    uncounted = [begin("t2"), {"attempt": "t2", "event": "failed", "step": "download"}]
    assert sm.plan_recovery(uncounted, ptr(V1, "a1"), None).rejection is None


def test_a_restart_during_the_trial_counts_and_resets_the_watchdog() -> None:
    now = T0 + timedelta(hours=3)
    after = sm.trial_after_restart(trial(restarts=0, heartbeat_at=T0.isoformat()), now, "m/2", counts=True)
    assert (after.restarts, after.heartbeat_at, after.model_version) == (1, now.isoformat(), "m/2")
    named = sm.trial_after_restart(trial(model_version="m/9"), now, "m/2", counts=True)
    assert named.model_version == "m/9"
    spared = sm.trial_after_restart(trial(restarts=0), now, "m/2", counts=False)
    assert (spared.restarts, spared.heartbeat_at) == (0, now.isoformat())


@pytest.mark.parametrize(
    ("previous", "boot", "cause"),
    [
        (None, "b1", "first_start"),
        ({"boot_id": "b0", "clean": False}, "b1", "power_cut"),
        ({"boot_id": "b0", "clean": True}, "b1", "power_cut"),
        ({"boot_id": "b1", "clean": True}, "b1", "clean_restart"),
        ({"boot_id": "b1", "clean": False}, "b1", "agent_crash"),
        ({"boot_id": "b1"}, "b1", "agent_crash"),
        ({"boot_id": "b1", "clean": False}, None, "unknown"),
        ({"clean": True}, "b1", "unknown"),
    ],
)
def test_the_restart_cause_comes_from_the_boot_id_and_the_clean_marker(previous, boot, cause) -> None:
    assert sm.restart_cause(previous, boot) == cause


@pytest.mark.parametrize(
    ("cause", "isolated", "counts"),
    [
        ("power_cut", False, False),
        ("clean_restart", False, False),
        ("first_start", False, False),
        ("agent_crash", False, True),  # the model ran inside the agent: it may have killed it
        ("unknown", False, True),
        ("agent_crash", True, False),  # the model ran in the trial worker: its crashes are seen directly
        ("power_cut", True, False),
    ],
)
def test_only_a_restart_the_model_may_have_caused_counts(cause, isolated, counts) -> None:
    assert sm.restart_counts(cause, isolated=isolated) is counts


def test_an_idle_slot_after_restart_still_says_it_rolled_back() -> None:
    records = [
        {"attempt": "t2", **intent().to_record()},
        {"attempt": "t2", "event": "rolled_back", "code": "trial_failure_rate"},
    ]
    assert sm.state_after_recovery(records, ptr(V1, "a1")) == (
        sm.rolled_back("trial_failure_rate"),
        ("a2", "trial_failure_rate"),
    )
    assert sm.state_after_recovery([*records, begin("t3")], ptr(V1, "a1")) == (sm.COMMITTED, None)
    assert sm.state_after_recovery([], ptr(V1, "a1")) == (sm.COMMITTED, None)
    assert sm.state_after_recovery([], None) == (sm.IDLE, None)


# trial
def test_the_trial_verdict_becomes_an_action() -> None:
    policy = TrialPolicy(window_s=60, max_failure_rate=0.1, min_requests_for_rate=10)
    assert sm.judge_trial(trial(), policy, T0).action == "continue"
    assert sm.judge_trial(trial(), policy, T0 + timedelta(seconds=61)).action == "commit"
    failing = sm.judge_trial(trial(requests=10, failures=5), policy, T0)
    assert (failing.action, failing.reason) == ("rollback", "trial_failure_rate")


# resume
@pytest.mark.parametrize(
    ("state", "reason", "retry"),
    [
        (sm.COMMITTED, "pending", True),  # an install cut before its switch, after the restart
        (sm.IDLE, "pending", True),
        (sm.failed("download_failed"), "failed:download_failed", True),
        (sm.failed("hash_mismatch"), "failed:hash_mismatch", True),
        (sm.failed("disk_full"), "failed:disk_full", True),
        (sm.rolled_back("active_unusable"), "rolled_back:active_unusable", True),
        (sm.error("active_unusable"), "error:active_unusable", True),
        (sm.failed("health_output_mismatch", judged=True), "failed:health_output_mismatch", False),
        (sm.rolled_back("trial_failure_rate"), "rolled_back:trial_failure_rate", False),
        (sm.rolled_back("operator"), "rolled_back:operator", False),
        (sm.rolled_back("artifact_disabled"), "rolled_back:artifact_disabled", False),
        (SlotState(Phase.REFUSED, "rolled_back"), "refused:rolled_back", False),
        (sm.INSTALLING, "installing", False),
    ],
)
def test_a_slot_behind_says_why_and_whether_it_is_retried(state: SlotState, reason: str, retry: bool) -> None:
    lag = sm.behind("a2", ptr(V1, "a1"), True, state)
    assert lag == sm.Behind(reason, retry)


def test_a_slot_serving_its_desired_artifact_is_not_behind() -> None:
    assert sm.behind("a2", ptr(V2, "a2"), True, sm.COMMITTED) is None
    assert sm.behind("a2", ptr(V2, "a2"), True, sm.TRIAL) is None
    assert sm.behind(None, ptr(V1, "a1"), True, sm.COMMITTED) is None


def test_a_desired_artifact_active_but_unusable_is_retried() -> None:
    assert sm.behind("a2", ptr(V2, "a2"), False, sm.error("active_unusable")) == sm.Behind(
        "error:active_unusable", True
    )
    assert sm.behind("a2", None, False, sm.IDLE) == sm.Behind("pending", True)


# decisions the executor used to make itself
def test_only_unassigned_slots_serving_a_disabled_artifact_are_rolled_back() -> None:
    actives = {"default": "a1", "fallback": "a1", "shadow": "a2", "empty": None}
    assert sm.disabled_orphans(actives, frozenset({"default"}), frozenset({"a1"})) == ["fallback"]
    assert sm.disabled_orphans(actives, frozenset(), frozenset({"a1", "a2"})) == [
        "default",
        "fallback",
        "shadow",
    ]
    assert sm.disabled_orphans(actives, frozenset(), frozenset()) == []


def test_an_impossible_rollback_keeps_the_current_version_and_names_it_failed() -> None:
    assert sm.rollback_impossible("trial_watchdog", "no_previous", ptr(V2, "a2")) == (
        sm.kept("trial_watchdog", "no_previous"),
        ("a2", "trial_watchdog"),
    )
    state, failed = sm.rollback_impossible("operator", "previous_corrupt", None)
    assert state.wire() == "kept:operator:previous_corrupt"
    assert failed is None


def test_a_journaled_rollback_switches_back_unless_active_already_names_the_target() -> None:
    decided = intent()
    assert sm.rollback_pointer_move(decided, ptr(V2, "a2")) == "switch_back"
    assert sm.rollback_pointer_move(decided, None) == "switch_back"
    assert sm.rollback_pointer_move(decided, ptr(V1, "a1")) == "drop_previous"  # cut after active's replace


@pytest.mark.parametrize(
    ("has_previous", "previous_loaded", "wire", "restore"),
    [
        (True, True, "rolled_back:active_unusable", True),
        (True, False, "error:no_usable_version", False),
        (False, False, "error:active_unusable", False),
    ],
)
def test_an_unusable_active_version_at_start_falls_back_to_previous_when_it_loads(
    has_previous: bool, previous_loaded: bool, wire: str, restore: bool
) -> None:
    fallback = sm.fallback_at_start(has_previous=has_previous, previous_loaded=previous_loaded)
    assert (fallback.state.wire(), fallback.restore_previous) == (wire, restore)


def test_the_fallback_to_previous_is_retried_and_an_error_is_behind_too() -> None:
    restored = sm.fallback_at_start(has_previous=True, previous_loaded=True).state
    lag = sm.behind("a2", ptr(V1, "a1"), True, restored)
    assert lag is not None
    assert lag.retry
    broken = sm.fallback_at_start(has_previous=False, previous_loaded=False).state
    lag = sm.behind("a2", ptr(V2, "a2"), False, broken)
    assert lag is not None
    assert (lag.reason, lag.retry) == ("error:active_unusable", True)


def test_a_collection_cut_after_a_commit_is_finished_only_while_the_commit_serves() -> None:
    records = [begin("t2"), {"attempt": "t2", "event": "committed"}]
    plan = sm.plan_recovery(records, ptr(V2, "a2"), None)
    assert sm.gc_after_recovery(plan, on_trial=False, state=sm.COMMITTED) == V2
    assert sm.gc_after_recovery(plan, on_trial=True, state=sm.TRIAL) is None
    assert sm.gc_after_recovery(plan, on_trial=False, state=sm.rolled_back("active_unusable")) is None
    unfinished = sm.plan_recovery([begin("t3")], ptr(V2, "a2"), None)
    assert sm.gc_after_recovery(unfinished, on_trial=False, state=sm.COMMITTED) is None


def test_a_commit_clears_only_its_own_artifacts_failure() -> None:
    assert sm.failed_after_commit(("a2", "download_failed"), "a2") is None
    assert sm.failed_after_commit(("a3", "health_failed"), "a2") == ("a3", "health_failed")
    assert sm.failed_after_commit(None, "a2") is None
