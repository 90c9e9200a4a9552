"""The install state machine: pure decisions of the A/B slot installer (no files, no clock, no network). Over
450 lines: one slot-state type and all its transitions, read together; each is a small pure function.

Each function takes what the executor (``installer.SlotInstaller``) read — journal records, the slot's
pointers, the trial record, refusal counts, ``now`` — and returns what to do; the executor does it against
the ``SlotStore`` and the ``Journal``. ``SlotState`` is the one type for what a slot is doing; its wire form
(``SlotReport.state``, at most 64 characters) is rendered in one place, ``SlotState.wire``.

Transitions (``docs/operations.md`` describes them for operators):

* ``decide_apply``: an assignment -> keep serving, refuse (disabled, rejected too often), roll the disabled
  active version back, or begin an install attempt;
* ``failure_counts``: a failed step counts a rejection when the candidate itself failed (load, health);
* ``plan_rollback``: roll back to ``previous`` (a journaled ``RollbackIntent``) or keep the current version;
* ``resume_rollback`` / ``plan_recovery`` / ``trial_after_restart`` / ``state_after_recovery``: what a restart
  finishes, counts, clears and reports; ``restart_cause`` / ``restart_counts``: whether a restart during a
  trial is held against the model (a power cut or an agent restart is not);
* ``disabled_orphans``: the slots whose active artifact is disabled and no longer assigned (rolled back);
* ``rollback_impossible`` / ``rollback_pointer_move``: a rollback that cannot happen, and the pointer step of
  a journaled one (switch back, or only drop a ``previous`` equal to ``active``);
* ``fallback_at_start``: the active version does not load at start: fall back to ``previous`` or report it;
* ``gc_after_recovery``: finish a garbage collection a crash cut right after a commit;
* ``judge_trial`` / ``failed_after_commit``: the trial verdict (``trial.trial_verdict``) as an action, and
  what a commit clears;
* ``behind``: whether a slot lags its desired artifact, why, and whether the agent retries it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from edgefleet.agent.install.replay import (
    Attempt,
    RollbackIntent,
    completed_rollback,
    last_attempt,
    rejection_to_count,
)
from edgefleet.agent.install.trial import TrialPolicy, TrialState, trial_verdict
from edgefleet.protocol.canonical import canonical_json

__all__ = [
    "COUNTED_STEPS",
    "PENDING_WINDOW",
    "RETRIED_ROLLBACKS",
    "ApplyDecision",
    "Behind",
    "KeptWhy",
    "Phase",
    "Pointer",
    "RecoveryPlan",
    "RestartCause",
    "RollbackResume",
    "SlotState",
    "StartFallback",
    "TrialAction",
    "Withdrawn",
    "behind",
    "decide_apply",
    "disabled_orphans",
    "failed_after_commit",
    "failure_counts",
    "fallback_at_start",
    "gc_after_recovery",
    "judge_trial",
    "plan_recovery",
    "plan_rollback",
    "restart_cause",
    "restart_counts",
    "resume_rollback",
    "rollback_impossible",
    "rollback_pointer_move",
    "state_after_recovery",
    "trial_after_restart",
]

MAX_STATE_CHARS = 64
COUNTED_STEPS = ("load", "health")
"""Steps whose failure is the candidate's own (it does not load, or fails its health check): counted."""


@dataclass(frozen=True)
class Pointer:
    """A slot pointer (``active``, ``previous``): which installed version, of which artifact, since when."""

    version: str
    artifact_id: str
    release_counter: int
    at: str

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self))


@dataclass(frozen=True)
class Withdrawn:
    """The ``withdrawn`` marker of a slot: the version whose ``active`` pointer was removed, and why."""

    version: str
    artifact_id: str
    reason: str
    at: str


class Phase(str, Enum):
    IDLE = "idle"
    INSTALLING = "installing"
    TRIAL = "trial"
    COMMITTED = "committed"
    FAILED = "failed"
    """An install attempt failed at a step; ``reason`` is its error code."""
    ROLLED_BACK = "rolled_back"
    """``previous`` serves again; ``reason`` says why (``trial_*``, ``artifact_disabled``, ...)."""
    ROLLING_BACK = "rolling_back"
    """Reported only, never journaled: a rollback is done on disk but serving has not swapped back yet
    (``agent.observed.while_swapping`` renders ``rolled_back`` so until then)."""
    KEPT = "kept"
    """A rollback was wanted (``reason``), impossible (``detail``: a ``KeptWhy``); the current one stays."""
    REFUSED = "refused"
    """The assignment is refused locally (``reason``: ``disabled`` or ``rolled_back``)."""
    PENDING = "pending"
    """The candidate is downloaded, verified and staged; its switch waits (``reason``: ``window``, the
    update window is closed). Never a failure."""
    ERROR = "error"
    """Nothing usable could be loaded at start (``reason``: ``active_unusable``, ``no_usable_version``)."""
    WITHDRAWN = "withdrawn"
    """The active artifact was withdrawn with no previous to return to (``reason``: ``artifact_disabled``):
    nothing is active, serving runs down its degraded ladder (``install.withdraw``)."""


KeptWhy = Literal["no_previous", "previous_corrupt"]


@dataclass(frozen=True)
class SlotState:
    phase: Phase
    reason: str = ""
    detail: str = ""
    judged: bool = False
    """``failed``: the candidate itself failed (load, health) and the rejection was counted."""

    def wire(self) -> str:
        """The report form: ``phase[:reason[:detail]]``, at most 64 characters."""
        parts = [self.phase.value, *(p for p in (self.reason, self.detail) if p)]
        return ":".join(parts)[:MAX_STATE_CHARS]

    @property
    def refused(self) -> bool:
        return self.phase is Phase.REFUSED

    @classmethod
    def of(cls, phase: Phase, reason: str = "", detail: str = "") -> SlotState:
        return cls(phase, reason, detail)


IDLE = SlotState(Phase.IDLE)
INSTALLING = SlotState(Phase.INSTALLING)
TRIAL = SlotState(Phase.TRIAL)
COMMITTED = SlotState(Phase.COMMITTED)
PENDING_WINDOW = SlotState(Phase.PENDING, "window")


def failed(code: str, *, judged: bool = False) -> SlotState:
    return SlotState(Phase.FAILED, code, judged=judged)


def rolled_back(reason: str) -> SlotState:
    return SlotState(Phase.ROLLED_BACK, reason)


def kept(reason: str, why: KeptWhy) -> SlotState:
    return SlotState(Phase.KEPT, reason, why)


def error(why: str) -> SlotState:
    return SlotState(Phase.ERROR, why)


# apply
@dataclass(frozen=True)
class ApplyDecision:
    action: Literal["keep", "rollback_disabled", "refuse", "install"]
    state: SlotState | None = None
    """``refuse``: the slot's new state."""
    failure_code: str | None = None
    """``refuse``: the code reported for the assigned artifact."""
    message: str = ""
    """``refuse``: the error message to report, when the refusal is an error."""


def decide_apply(
    *,
    artifact_id: str,
    version: str,
    active: Pointer | None,
    loaded: bool,
    disabled: frozenset[str],
    rejections: int,
    max_rollbacks: int,
) -> ApplyDecision:
    """What an assignment of ``artifact_id`` (content address ``version``) does to a slot."""
    if artifact_id in disabled:  # the director normally leaves disabled artifacts out
        if active is not None and active.artifact_id == artifact_id:
            return ApplyDecision("rollback_disabled")
        return ApplyDecision("refuse", SlotState(Phase.REFUSED, "disabled"), "artifact_disabled")
    if active is not None and active.version == version and loaded:
        return ApplyDecision("keep")  # already serving (or on trial)
    if rejections >= max_rollbacks:
        return ApplyDecision(
            "refuse",
            SlotState(Phase.REFUSED, "rolled_back"),
            "release_refused_after_rollbacks",
            f"{artifact_id} was rejected {rejections} times; waiting for a newer release",
        )
    return ApplyDecision("install")


def disabled_orphans(
    actives: dict[str, str | None], assigned: frozenset[str], disabled: frozenset[str]
) -> list[str]:
    """The slots (``actives``: slot -> active artifact) to roll back (``artifact_disabled``, not counted)
    when a desired state disables their active artifact and no longer assigns them (an assigned slot is
    judged by ``decide_apply``)."""
    return [
        name
        for name, artifact in sorted(actives.items())
        if artifact is not None and artifact in disabled and name not in assigned
    ]


def failure_counts(step: str) -> bool:
    """A failed ``step`` counts one rejection of the candidate (journaled ``count: true`` first)."""
    return step in COUNTED_STEPS


# rollback
def plan_rollback(
    *,
    reason: str,
    active: Pointer | None,
    previous: Pointer | None,
    trial_attempt: str | None,
    count: bool,
    attempt: str | None,
    fresh_attempt: str,
) -> RollbackIntent | None:
    """The rollback to journal, or ``None`` when there is no ``previous`` (the slot is then
    ``kept(reason, "no_previous")``). ``attempt``: the attempt a resumed rollback belongs to; otherwise the
    trial's, or ``fresh_attempt`` (an operator rollback, a disabled artifact)."""
    if previous is None:
        return None
    return RollbackIntent(
        attempt=attempt or trial_attempt or fresh_attempt,
        reason=reason,
        from_version=active.version if active else "",
        from_artifact=active.artifact_id if active else "",
        to_version=previous.version,
        to_artifact=previous.artifact_id,
        count=count and active is not None,
    )


def rollback_impossible(
    reason: str, why: KeptWhy, active: Pointer | None
) -> tuple[SlotState, tuple[str, str] | None]:
    """(state, failed artifact and code) when the rollback for ``reason`` cannot happen: the current version
    is kept (``kept:<reason>:<why>``) and reported as the one that failed."""
    return kept(reason, why), ((active.artifact_id, reason) if active is not None else None)


def rollback_pointer_move(
    intent: RollbackIntent, active: Pointer | None
) -> Literal["switch_back", "drop_previous"]:
    """The pointer step of a journaled rollback (idempotent): switch ``previous`` back to ``active``, or,
    when a crash cut between the replace of ``active`` and the removal of ``previous``, only drop
    ``previous``."""
    if active is None or active.version != intent.to_version:
        return "switch_back"
    return "drop_previous"


class RollbackResume(Enum):
    FINISH = "finish"
    """The pointers already name the target: only the tail (count, journal, trial record) is left."""
    REDO = "redo"
    """Nothing moved yet: roll back again (verify and load ``previous``, then the pointers)."""
    ABANDON = "abandon"
    """The pointers name neither side: the decision no longer applies (``rollback_pointers_moved``)."""


def resume_rollback(
    intent: RollbackIntent, active: Pointer | None, previous: Pointer | None
) -> RollbackResume:
    if active is not None and active.version == intent.to_version:
        return RollbackResume.FINISH
    if (
        active is not None
        and active.version == intent.from_version
        and previous is not None
        and previous.version == intent.to_version
    ):
        return RollbackResume.REDO
    return RollbackResume.ABANDON


# recovery
@dataclass(frozen=True)
class RecoveryPlan:
    rejection: tuple[str, str] | None
    """``(artifact, attempt)``: a rejection journaled and maybe not counted (counted idempotently)."""
    attempt: Attempt | None
    switched: bool
    """The last attempt was cut after its switch (it is on trial)."""
    interrupted: str | None
    """The attempt id cut before its switch: journal it ``interrupted``."""
    committed: bool
    """The last attempt was committed."""
    clear_trial: bool
    """The trial record is stale (commit journaled, or no switch happened): remove it."""


def plan_recovery(
    records: list[dict[str, Any]], active: Pointer | None, trial: TrialState | None
) -> RecoveryPlan:
    attempt = last_attempt(records)
    switched = interrupted = False
    if attempt is not None and not attempt.finished:
        switched = active is not None and active.version == attempt.version
        interrupted = not switched
    committed = attempt is not None and attempt.terminal == "committed"
    clear = False
    if trial is not None:
        if committed and attempt is not None and attempt.attempt == trial.attempt:
            clear = True  # the commit was journaled; only the trial file's removal was cut
        elif active is None or trial.version != active.version:
            clear = True  # written before a switch that never happened, or left by a rollback
    return RecoveryPlan(
        rejection=rejection_to_count(records),
        attempt=attempt,
        switched=switched,
        interrupted=attempt.attempt if interrupted and attempt is not None else None,
        committed=committed,
        clear_trial=clear,
    )


RestartCause = Literal["first_start", "power_cut", "clean_restart", "agent_crash", "unknown"]


def restart_cause(previous_run: dict[str, Any] | None, boot_id: str | None) -> RestartCause:
    """How the previous run of the agent ended, from its run record (``agent.lifecycle``) and this boot's
    id: another boot id is a power cut (or a reboot), a run marked clean a clean restart, else the agent
    process died (killed, out of memory, crashed)."""
    if previous_run is None:
        return "first_start"
    before = previous_run.get("boot_id")
    if not boot_id or not isinstance(before, str) or not before:
        return "unknown"
    if before != boot_id:
        return "power_cut"
    return "clean_restart" if previous_run.get("clean") is True else "agent_crash"


def restart_counts(cause: RestartCause, *, isolated: bool) -> bool:
    """Does a restart during a trial count against the version on trial (``TrialPolicy.max_restarts``)?

    With the trial isolated (the version on trial loads and runs only in a supervised worker process), the
    agent's own death is never the model's: the model's crashes are seen directly, as the worker's death, and
    roll back at once (``trial_model_crashed``). Without isolation (the model runs inside the agent), a
    power cut or a clean restart does not count, an agent that died in the same boot (or an unknown cause)
    does: the model may have taken the process down."""
    if isolated:
        return False
    return cause in ("agent_crash", "unknown")


def trial_after_restart(trial: TrialState, now: datetime, model_version: str, *, counts: bool) -> TrialState:
    """The trial record after the agent restarted during it: one more restart when it ``counts``
    (``restart_counts``); the watchdog restarts at ``now`` (it measures a silent *running* agent)."""
    return replace(
        trial,
        restarts=trial.restarts + (1 if counts else 0),
        heartbeat_at=now.isoformat(),
        model_version=trial.model_version or model_version,
    )


@dataclass(frozen=True)
class StartFallback:
    """What a slot does at start when its active version does not load (corrupt or unloadable)."""

    state: SlotState
    restore_previous: bool
    """Serve ``previous``: its model loaded; switch the pointers back and drop the trial record."""


def fallback_at_start(*, has_previous: bool, previous_loaded: bool) -> StartFallback:
    """``active`` did not load at start. With a loadable ``previous``: serve it
    (``rolled_back:active_unusable``, retried: a fresh download repairs the active copy); without one:
    ``error:active_unusable`` (a new assignment, even of the same artifact, repairs it); with an unloadable
    one: ``error:no_usable_version``."""
    if not has_previous:
        return StartFallback(error("active_unusable"), restore_previous=False)
    if not previous_loaded:
        return StartFallback(error("no_usable_version"), restore_previous=False)
    return StartFallback(rolled_back("active_unusable"), restore_previous=True)


def gc_after_recovery(plan: RecoveryPlan, *, on_trial: bool, state: SlotState) -> str | None:
    """The version to keep when a garbage collection is to be finished after a restart (it runs right after
    a commit, so a crash may cut it): the last attempt was committed and the slot serves it, committed and
    not on trial. ``None``: nothing to collect now."""
    if plan.committed and not on_trial and state == COMMITTED and plan.attempt is not None:
        return plan.attempt.version
    return None


def state_after_recovery(
    records: list[dict[str, Any]], active: Pointer | None
) -> tuple[SlotState, tuple[str, str] | None]:
    """(state, failed artifact and code) of an idle slot after a restart: ``rolled_back:<reason>`` while the
    last rollback is done and no attempt began since (so it is still said after a restart), else
    ``committed`` when something is active."""
    if active is None:
        return IDLE, None
    done = completed_rollback(records)
    if done is not None and done.to_version == active.version:
        return rolled_back(done.reason), ((done.from_artifact, done.reason) if done.from_artifact else None)
    return COMMITTED, None


# trial
@dataclass(frozen=True)
class TrialAction:
    action: Literal["continue", "commit", "rollback"]
    reason: str = ""


def judge_trial(trial: TrialState, policy: TrialPolicy, now: datetime) -> TrialAction:
    verdict, reason = trial_verdict(trial, policy, now)
    if verdict == "rollback":
        return TrialAction("rollback", reason or "trial_failed")
    return TrialAction(verdict)


def failed_after_commit(failed: tuple[str, str] | None, committed_artifact: str) -> tuple[str, str] | None:
    """The slot's last failure after ``committed_artifact`` was committed: a failure of that same artifact
    (an earlier attempt) is cleared, another artifact's stays reported."""
    if failed is not None and failed[0] == committed_artifact:
        return None
    return failed


# resume
RETRIED_ROLLBACKS = frozenset({"active_unusable"})
"""Rollbacks after which the desired artifact is retried: the active copy was damaged on disk, a fresh
download repairs it. Every other rollback (a failed trial, the operator, a disabled artifact) holds the slot
on ``previous`` until the desired state changes."""


@dataclass(frozen=True)
class Behind:
    """A slot does not serve the artifact its desired state names."""

    reason: str
    """Why, for the report: the slot's state (``failed:<code>``, ``refused:rolled_back``...), ``installing``,
    or ``pending`` (not attempted since the agent started or since the assignment arrived)."""
    retry: bool
    """The agent retries it (with capped, jittered backoff) until it is installed or refused."""


def behind(desired: str | None, active: Pointer | None, loaded: bool, state: SlotState) -> Behind | None:
    """Is a slot behind its desired artifact ``desired``, why, and is it retried? ``None``: not behind.

    Retried: an attempt that was cut or failed for a reason that is not the candidate's (a download, a full
    disk, a mismatching file, a restart). Not retried: a candidate that was judged (failed its load or health
    check, or its trial: a counted rejection), a refused artifact, a held rollback, an install in progress."""
    if desired is None:
        return None
    if active is not None and active.artifact_id == desired and loaded and state.phase is not Phase.ERROR:
        return None
    held = (
        state.phase is Phase.REFUSED
        or (state.phase is Phase.ROLLED_BACK and state.reason not in RETRIED_ROLLBACKS)
        or (state.phase is Phase.FAILED and state.judged)
    )
    if held:
        return Behind(state.wire(), retry=False)
    if state.phase is Phase.INSTALLING:
        return Behind("installing", retry=False)
    if state.phase in (Phase.IDLE, Phase.COMMITTED, Phase.TRIAL):
        return Behind("pending", retry=True)
    return Behind(state.wire(), retry=True)
