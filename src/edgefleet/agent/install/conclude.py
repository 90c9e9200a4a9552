"""How a trial ends, executed: commit (then garbage-collect), or roll back to ``previous`` (journaled first,
so ``recovery`` finishes a rollback a crash cut). Every choice is made in ``machine``; this does it.

Crash points: ``before:commit`` / ``after:commit``; in a rollback ``rollback:start`` (decided, previous
verified, nothing written), ``rollback:journaled`` (decision durable), ``rollback:active_replaced``
(``SlotStore``), ``rollback:previous_removed`` (pointers final, not yet journaled ``rolled_back``) and
``rollback:end`` (journaled, trial record not yet removed).
"""

from __future__ import annotations

import logging
import secrets

from edgefleet.agent.install import machine as sm
from edgefleet.agent.install.executor import Executor, SlotRun
from edgefleet.agent.install.replay import RollbackIntent
from edgefleet.agent.install.steps import StepRecord
from edgefleet.agent.install.trial import TrialState
from edgefleet.agent.install.withdraw import withdraw, withdraws
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["commit", "finish_rollback", "judge_trial", "rollback"]

log = logging.getLogger("edgefleet.agent.install")


def judge_trial(ex: Executor, s: SlotRun) -> None:
    """Judge the slot's trial now: commit, keep going (the record is saved), or roll back (counted)."""
    assert s.trial is not None
    with s.counters:
        snapshot = TrialState.from_dict(s.trial.to_dict())
    judged = sm.judge_trial(snapshot, ex.config.trial_for(s.store.slot), ex.now())
    if judged.action == "commit":
        commit(ex, s, snapshot)
    elif judged.action == "rollback":
        rollback(ex, s, judged.reason, count=True)
    else:
        s.store.write_trial(snapshot.to_dict())


def commit(ex: Executor, s: SlotRun, trial: TrialState) -> None:
    ex.crash("before:commit")
    ex.journal(s, trial.attempt, event="done", step="commit")
    ex.journal(s, trial.attempt, event="committed")
    ex.report_step(StepRecord(s.store.slot, trial.attempt, trial.artifact_id, "commit", ok=True))
    s.store.clear_trial()
    s.trial = None
    s.state = sm.COMMITTED
    if ex.isolated:
        _serve_in_process(ex, s, trial.version)
    s.failed = sm.failed_after_commit(s.failed, trial.artifact_id)
    ex.crash("after:commit")
    removed = s.store.gc(max_removals=ex.config.gc_max_removals)
    log.info(
        "event=committed slot=%s artifact=%s gc_removed=%d", s.store.slot, trial.artifact_id, len(removed)
    )


def _serve_in_process(ex: Executor, s: SlotRun, key: str) -> None:
    """After the commit, the version leaves its trial worker: loaded in-process (the worker stops). Kept
    in the worker when that load fails (it keeps serving; the next start loads it in-process). Nothing to do
    where the serving layer holds the slot's model (it reloads in-process itself)."""
    if ex.config.releases(s.store.slot):
        return
    try:
        model = ex.load_version(s.store, key, warmup=False)
    except EdgefleetError as exc:
        log.warning("event=commit_in_process_load_failed slot=%s code=%s", s.store.slot, exc.code)
        return
    old, s.model = s.model, model
    if old is not None:
        old.close()


def rollback(ex: Executor, s: SlotRun, reason: str, *, count: bool, attempt: str | None = None) -> bool:
    """Verify and load ``previous``, journal the decision, then switch back (``finish_rollback``). False
    when there is no usable previous version: the current version is kept, or, for a disabled artifact with
    no previous at all, withdrawn (``withdraw``: serving goes down its degraded ladder)."""
    store = s.store
    active = store.read_active()
    trial = s.trial
    s.trial = None
    intent = sm.plan_rollback(
        reason=reason,
        active=active,
        previous=store.read_previous(),
        trial_attempt=trial.attempt if trial is not None else None,
        count=count,
        attempt=attempt,
        fresh_attempt=secrets.token_hex(8),
    )
    if intent is None:
        store.clear_trial()
        if active is not None and withdraws(reason):
            withdraw(ex, s, active, reason)
            return False
        s.state, s.failed = sm.rollback_impossible(reason, "no_previous", active)
        s.last_error = {"code": "no_previous_version", "message": f"cannot roll back ({reason})"}
        return False
    try:
        model = ex.load_version(store, intent.to_version, warmup=True)
    except EdgefleetError as exc:
        store.clear_trial()
        s.state, s.failed = sm.rollback_impossible(reason, "previous_corrupt", active)
        s.last_error = ex.error(exc, f"previous version is unusable; kept the current one ({reason})")
        log.error("event=rollback_impossible slot=%s code=%s", store.slot, exc.code)
        return False
    ex.crash("rollback:start")
    ex.journal(s, intent.attempt, **intent.to_record())
    ex.crash("rollback:journaled")
    finish_rollback(ex, s, intent)
    ex.hold(s, model, intent.to_artifact)
    log.warning("event=rolled_back slot=%s to=%s reason=%s", store.slot, intent.to_artifact, reason)
    return True


def finish_rollback(ex: Executor, s: SlotRun, intent: RollbackIntent) -> None:
    """The durable part of a journaled rollback; idempotent, so ``recovery`` can run it again."""
    store = s.store
    if intent.count:
        store.count_rollback(intent.from_artifact, attempt=intent.attempt)
    if sm.rollback_pointer_move(intent, store.read_active()) == "switch_back":
        store.rollback(at=ex.now().isoformat())
    else:
        store.drop_previous_if_active()  # cut between the replace of active and the removal of previous
    ex.crash("rollback:previous_removed")
    ex.journal(s, intent.attempt, event="rolled_back", code=intent.reason)
    ex.crash("rollback:end")
    store.clear_trial()
    s.trial = None
    s.state = sm.rolled_back(intent.reason)
    s.failed = (intent.from_artifact, intent.reason) if intent.from_artifact else None
    s.last_error = {"code": intent.reason, "message": f"rolled back from {intent.from_artifact or '?'}"}
