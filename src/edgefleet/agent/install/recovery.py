"""Recovery on start, executed: replay a slot's journal against its pointers and load what is active.

An attempt cut before its switch is journaled ``interrupted`` (and retried: ``machine.behind``); one cut after
it is on trial and may count a restart (``machine.restart_counts``); a rollback cut half way is finished or
redone (``machine.resume_rollback``); a rejection journaled but not yet counted is counted; a garbage
collection cut after a commit is finished; an active version that no longer loads falls back to ``previous``
(``machine.fallback_at_start``). Every choice is made in ``machine``; this does it.
"""

from __future__ import annotations

import logging

from edgefleet.agent.install import machine as sm
from edgefleet.agent.install import withdraw
from edgefleet.agent.install.conclude import finish_rollback, judge_trial, rollback
from edgefleet.agent.install.executor import Executor, SlotRun, model_version
from edgefleet.agent.install.machine import Pointer, RestartCause, RollbackResume
from edgefleet.agent.install.replay import RollbackIntent, pending_rollback
from edgefleet.agent.install.trial import TrialState
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["recover_slot"]

log = logging.getLogger("edgefleet.agent.install")


def recover_slot(ex: Executor, s: SlotRun, cause: RestartCause) -> None:
    store = s.store
    store.clear_staging()
    records = s.journal.read()
    intent = pending_rollback(records)
    if intent is not None:
        _resume_rollback(ex, s, intent)
        records = s.journal.read()
    if store.drop_previous_if_active():
        log.info("event=recover_previous_dropped slot=%s", store.slot)
    withdraw.recover(ex, s)
    active = store.read_active()
    raw_trial = store.read_trial()
    trial = TrialState.from_dict(raw_trial) if raw_trial else None
    plan = sm.plan_recovery(records, active, trial)
    if plan.rejection is not None:
        store.count_rollback(plan.rejection[0], attempt=plan.rejection[1])  # a no-op when it was counted
    if plan.attempt is not None and plan.switched:
        log.info("event=recover_switched slot=%s artifact=%s", store.slot, plan.attempt.artifact_id)
    if plan.interrupted is not None and plan.attempt is not None:
        ex.journal(s, plan.interrupted, event="interrupted")
        log.info("event=recover_interrupted slot=%s artifact=%s", store.slot, plan.attempt.artifact_id)
    if plan.clear_trial:
        store.clear_trial()
        trial = None
    if active is not None and not s.loaded and not _load_active(ex, s, active, on_trial=trial is not None):
        trial = None  # the version on trial was unusable and has been replaced by previous
    if trial is not None:
        counts = sm.restart_counts(cause, isolated=ex.isolated)
        trial = sm.trial_after_restart(trial, ex.now(), model_version(store, trial.version), counts=counts)
        log.info("event=recover_trial slot=%s cause=%s counted=%s", store.slot, cause, counts)
        store.write_trial(trial.to_dict())
        s.trial = trial
        s.state = sm.TRIAL
        judge_trial(ex, s)
    elif s.state == sm.IDLE and active is not None:
        s.state, s.failed = sm.state_after_recovery(records, active)
    keep = sm.gc_after_recovery(plan, on_trial=s.trial is not None, state=s.state)
    if keep is not None:
        store.gc(keep={keep}, max_removals=ex.config.gc_max_removals)


def _resume_rollback(ex: Executor, s: SlotRun, intent: RollbackIntent) -> None:
    """Finish a rollback the journal says was decided and not done. The active version is loaded by the
    rest of ``recover_slot``."""
    store = s.store
    resume = sm.resume_rollback(intent, store.read_active(), store.read_previous())
    log.info("event=recover_rollback slot=%s resume=%s", store.slot, resume.value)
    if resume is RollbackResume.FINISH:
        finish_rollback(ex, s, intent)
        return
    if resume is RollbackResume.REDO:
        if rollback(ex, s, intent.reason, count=intent.count, attempt=intent.attempt):
            return
        code = str((s.last_error or {}).get("code", "rollback_impossible"))
    else:
        code = "rollback_pointers_moved"
    ex.journal(s, intent.attempt, event="rollback_abandoned", code=code)
    log.warning("event=recover_rollback_abandoned slot=%s code=%s", store.slot, code)


def _load_active(ex: Executor, s: SlotRun, active: Pointer, *, on_trial: bool) -> bool:
    """Load the active version (in the trial worker while it is on trial). When it is unusable, load
    ``previous`` if there is one and do what ``machine.fallback_at_start`` says. True if active loaded."""
    store = s.store
    try:
        ex.hold(s, ex.load_version(store, active.version, warmup=True, isolated=on_trial), active.artifact_id)
        return True
    except EdgefleetError as exc:
        s.last_error = ex.error(exc, f"active version {active.artifact_id} is unusable")
        s.failed = (active.artifact_id, exc.code)
        log.error("event=active_unusable slot=%s code=%s", store.slot, exc.code)
    previous = store.read_previous()
    model = None
    if previous is not None:
        try:
            model = ex.load_version(store, previous.version, warmup=True)
        except EdgefleetError as exc:
            s.last_error = ex.error(exc, "neither the active nor the previous version is usable")
    fallback = sm.fallback_at_start(has_previous=previous is not None, previous_loaded=model is not None)
    s.state = fallback.state
    if fallback.restore_previous and previous is not None:
        store.rollback(at=ex.now().isoformat())
        store.clear_trial()
        ex.hold(s, model, previous.artifact_id)
    return False
