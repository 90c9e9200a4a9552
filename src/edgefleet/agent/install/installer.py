"""The A/B slot installer: never brick (ARCHITECTURE 3.4). Over 450 lines: the journaled steps, recovery and
rollback share one slot's bookkeeping; every decision among them is in ``machine`` (pure), this executes them.

Per model slot, an attempt runs the journaled steps download -> verify -> stage -> load -> health -> switch,
then a trial, then commit. Until the switch, the old version keeps serving untouched; the switch is one atomic
replace of the ``active`` pointer and one reference swap in memory (no serving gap). During the trial a crash
of the agent, a failure rate over the threshold or a missed watchdog rolls back to ``previous`` without the
network. A release rejected or rolled back ``max_rollbacks`` times is refused locally until a newer one
arrives.

``recover()`` runs once at start: it replays the journal against the pointers (an attempt cut before its
switch is abandoned and retried on the next ``apply``; one cut after it is on trial and counts a restart; a
rollback cut half way is finished; a rejection journaled but not yet counted is counted; a garbage collection
cut after a commit is finished), re-verifies and loads the active version, and falls back to ``previous``
when the active one is corrupt.

Crash points (the harness's SIGKILL hook, ``install.faults``): ``before:<step>`` / ``after:<step>`` of each
journaled step; in a rollback ``rollback:start`` (decided, previous verified, nothing written),
``rollback:journaled`` (decision durable), ``rollback:active_replaced`` (``SlotStore``),
``rollback:previous_removed`` (pointers final, not yet journaled ``rolled_back``) and ``rollback:end``
(journaled, trial record not yet removed); and those of ``SlotStore`` (``refusals:*``, ``gc:*``, ``write:*``).

Each version is loaded by the adapter its manifest's ``runtime.name`` names (``adapter_for``), and each
journaled step is also reported to a ``StepSink`` (telemetry: one update event per step per attempt).
"""

from __future__ import annotations

import errno
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from edgefleet.agent.datadir import AgentLock
from edgefleet.agent.install import machine as sm
from edgefleet.agent.install.faults import CrashHook, no_crash
from edgefleet.agent.install.fetch import ArtifactFetcher, ResolvedAssignment
from edgefleet.agent.install.health import HealthPolicy, HealthReport, run_health_check
from edgefleet.agent.install.journal import Journal
from edgefleet.agent.install.machine import Pointer, RestartCause, RollbackResume, SlotState
from edgefleet.agent.install.replay import RollbackIntent, pending_rollback
from edgefleet.agent.install.slots import SlotStore, VersionCorruptError, version_key
from edgefleet.agent.install.steps import NoSteps, StepRecord, StepSink
from edgefleet.agent.install.trial import TrialPolicy, TrialState
from edgefleet.agent.runtime.base import LoadedModel, LoadOptions, RuntimeAdapter
from edgefleet.protocol.desired_state import Assignment, DesiredState, SlotReport
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.hardware_class import Threads
from edgefleet.protocol.manifest import ArtifactManifest
from edgefleet.trust.errors import DiskFullError, HashMismatchError

__all__ = ["AdapterFor", "InstallerConfig", "SlotInstaller"]

log = logging.getLogger("edgefleet.agent.install")
T = TypeVar("T")
AdapterFor = Callable[[str], RuntimeAdapter]
"""A manifest's ``runtime.name`` -> the adapter that loads it (``agent.serve.RuntimeAdapters``)."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class InstallerConfig:
    threads: Threads = field(default_factory=Threads)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    trial: TrialPolicy = field(default_factory=TrialPolicy)
    max_rollbacks: int = 2
    """A release rejected by its health check or rolled back this many times is refused locally."""
    gc_max_removals: int = 4
    served_slots: frozenset[str] | None = None
    """The slots the serving layer answers requests from and heartbeats (the agent: ``default``). Only there
    do ``trial.watchdog_s`` and ``trial.min_requests`` apply: a ``fallback`` or ``<slot>.shadow`` version gets
    no steady traffic and no heartbeat, so its trial is judged by time, restarts and failure rate. ``None``:
    every slot is served."""

    def trial_for(self, slot: str) -> TrialPolicy:
        """The trial policy for ``slot``."""
        if self.served_slots is None or slot in self.served_slots:
            return self.trial
        return replace(self.trial, watchdog_s=None, min_requests=0)


@dataclass
class _Slot:
    store: SlotStore
    journal: Journal
    model: LoadedModel | None = None
    serving_artifact: str | None = None
    state: SlotState = sm.IDLE
    last_error: dict[str, object] | None = None
    trial: TrialState | None = None
    counters: threading.Lock = field(default_factory=threading.Lock)
    last_health: HealthReport | None = None
    failed: tuple[str, str] | None = None
    """(artifact id, code) of the last install, health check or trial that failed in this slot."""


class _StepFailed(Exception):
    def __init__(self, step: str, error: EdgefleetError, duration_ms: float = 0.0) -> None:
        super().__init__(step)
        self.step = step
        self.error = error
        self.duration_ms = duration_ms


class SlotInstaller:
    """Implements ``agent.install.interface.Installer``. Holds ``slots/installer.lock`` while open.

    Give ``adapter_for`` (the agent does) to load each version with the runtime its manifest names, or one
    ``adapter`` to load every version with it whatever the manifest says (tests, benches).
    """

    def __init__(
        self,
        data_root: Path,
        fetcher: ArtifactFetcher,
        adapter: RuntimeAdapter | None = None,
        *,
        adapter_for: AdapterFor | None = None,
        config: InstallerConfig | None = None,
        now: Callable[[], datetime] = _utcnow,
        crash: CrashHook = no_crash,
        steps: StepSink | None = None,
        isolated_for: AdapterFor | None = None,
    ) -> None:
        if adapter is None and adapter_for is None:
            raise TypeError("SlotInstaller needs an adapter or adapter_for")
        self._root = Path(data_root)
        self._fetcher = fetcher
        self._adapter = adapter
        self._adapter_for = adapter_for
        self._isolated_for = isolated_for
        self._steps: StepSink = steps or NoSteps()
        self._config = config or InstallerConfig()
        self._now = now
        self._crash = crash
        self._mutex = threading.RLock()
        self._slots: dict[str, _Slot] = {}
        self._desired: DesiredState | None = None
        self._lock = AgentLock(self._root / "slots" / "installer.lock")
        self._lock.acquire()

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> SlotInstaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # serving-side API
    def model(self, slot: str) -> LoadedModel | None:
        s = self._slots.get(slot)
        return s.model if s else None

    def serving(self, slot: str) -> str | None:
        """The artifact id whose model ``model(slot)`` returns."""
        s = self._slots.get(slot)
        return s.serving_artifact if s else None

    def record_inference(self, slot: str, *, ok: bool) -> None:
        s = self._slots.get(slot)
        if s is None or s.trial is None:
            return
        with s.counters:
            if s.trial is not None:
                s.trial.requests += 1
                s.trial.failures += 0 if ok else 1

    def heartbeat(self, slot: str) -> None:
        """The serving layer is alive and serving (feeds ``TrialPolicy.watchdog_s``). Never blocks on an
        install in progress."""
        s = self._slots.get(slot)
        if s is None or s.trial is None:
            return
        with s.counters:
            if s.trial is not None:
                s.trial.heartbeat_at = self._now().isoformat()

    def on_trial(self, slot: str) -> str | None:
        """``<model>/<version>`` of the version on trial in ``slot``, or ``None``. Never blocks."""
        s = self._slots.get(slot)
        trial = s.trial if s is not None else None
        return trial.model_version if trial is not None else None

    def last_error(self, slot: str) -> dict[str, object] | None:
        s = self._slots.get(slot)
        return s.last_error if s else None

    def slot_reports(self) -> dict[str, SlotReport]:
        out: dict[str, SlotReport] = {}
        for name, s in sorted(self._slots.items()):
            active = s.store.read_active()
            previous = s.store.read_previous()
            desired = self._desired_artifact(name)
            lag = sm.behind(desired, active, s.model is not None, s.state)
            out[name] = SlotReport(
                active=active.artifact_id if active else None,
                previous=previous.artifact_id if previous else None,
                state=s.state.wire(),
                failed_artifact=s.failed[0][:64] if s.failed else None,
                failure_code=s.failed[1][:64] if s.failed else None,
                desired=desired,
                behind=lag.reason[:64] if lag else None,
                retrying=lag.retry if lag else False,
            )
        return out

    def _desired_artifact(self, slot: str) -> str | None:
        assignment = self._desired.slots.get(slot) if self._desired is not None else None
        return assignment.artifact_id if assignment is not None else None

    def wants_retry(self) -> bool:
        """Some slot is behind its desired artifact and not refused: ``retry()`` would install it."""
        for name, s in list(self._slots.items()):
            lag = sm.behind(self._desired_artifact(name), s.store.read_active(), s.model is not None, s.state)
            if lag is not None and lag.retry:
                return True
        return False

    def retry(self) -> bool:
        """Apply the last desired state again when ``wants_retry()``. True when it did."""
        with self._mutex:
            if self._desired is None or not self.wants_retry():
                return False
            self.apply(self._desired)
            return True

    # lifecycle
    def _slot(self, name: str) -> _Slot:
        s = self._slots.get(name)
        if s is None:
            store = SlotStore(self._root, name, crash=self._crash)
            journal = Journal(self._root / "journal" / f"{name}.jsonl", crash=self._crash)
            s = self._slots[name] = _Slot(store, journal)
        return s

    def recover(self, cause: RestartCause = "unknown") -> None:
        """Replay the journal of every slot on disk and load what is active. Idempotent. ``cause``: how the
        previous run ended (``agent.lifecycle``); a restart during a trial counts against the version on trial
        only when the model may have caused it (``machine.restart_counts``)."""
        slots_dir = self._root / "slots"
        names = sorted(p.name for p in slots_dir.iterdir() if p.is_dir()) if slots_dir.is_dir() else []
        with self._mutex:
            for name in names:
                self._recover_slot(self._slot(name), cause)

    def _recover_slot(self, s: _Slot, cause: RestartCause) -> None:
        store = s.store
        store.clear_staging()
        records = s.journal.read()
        intent = pending_rollback(records)
        if intent is not None:
            self._resume_rollback(s, intent)
            records = s.journal.read()
        if store.drop_previous_if_active():
            log.info("event=recover_previous_dropped slot=%s", store.slot)
        active = store.read_active()
        raw_trial = store.read_trial()
        trial = TrialState.from_dict(raw_trial) if raw_trial else None
        plan = sm.plan_recovery(records, active, trial)
        if plan.rejection is not None:
            store.count_rollback(plan.rejection[0], attempt=plan.rejection[1])  # a no-op when it was counted
        if plan.attempt is not None and plan.switched:
            log.info("event=recover_switched slot=%s artifact=%s", store.slot, plan.attempt.artifact_id)
        if plan.interrupted is not None and plan.attempt is not None:
            self._journal(s, plan.interrupted, event="interrupted")
            log.info("event=recover_interrupted slot=%s artifact=%s", store.slot, plan.attempt.artifact_id)
        if plan.clear_trial:
            store.clear_trial()
            trial = None
        on_trial = trial is not None
        if active is not None and s.model is None and not self._load_active_or_fallback(s, active, on_trial):
            trial = None  # the version on trial was unusable and has been replaced by previous
        if trial is not None:
            counts = sm.restart_counts(cause, isolated=self._isolated_for is not None)
            named = _model_version(store, trial.version)
            trial = sm.trial_after_restart(trial, self._now(), named, counts=counts)
            log.info("event=recover_trial slot=%s cause=%s counted=%s", store.slot, cause, counts)
            store.write_trial(trial.to_dict())
            s.trial = trial
            s.state = sm.TRIAL
            self._judge_trial(s)
        elif s.state == sm.IDLE and active is not None:
            s.state, s.failed = sm.state_after_recovery(records, active)
        if plan.committed and s.trial is None and s.state == sm.COMMITTED and plan.attempt is not None:
            # finish a garbage collection cut by the crash (it runs right after the commit)
            store.gc(keep={plan.attempt.version}, max_removals=self._config.gc_max_removals)

    def _resume_rollback(self, s: _Slot, intent: RollbackIntent) -> None:
        """Finish a rollback the journal says was decided and not done. The active version is loaded by the
        rest of ``recover()``."""
        store = s.store
        resume = sm.resume_rollback(intent, store.read_active(), store.read_previous())
        log.info("event=recover_rollback slot=%s resume=%s", store.slot, resume.value)
        if resume is RollbackResume.FINISH:
            self._finish_rollback(s, intent)
            return
        if resume is RollbackResume.REDO:
            if self._rollback(s, intent.reason, count=intent.count, attempt=intent.attempt):
                return
            code = str((s.last_error or {}).get("code", "rollback_impossible"))
        else:
            code = "rollback_pointers_moved"
        self._journal(s, intent.attempt, event="rollback_abandoned", code=code)
        log.warning("event=recover_rollback_abandoned slot=%s code=%s", store.slot, code)

    def _load_active_or_fallback(self, s: _Slot, active: Pointer, on_trial: bool) -> bool:
        """Load the active version (in the trial worker while it is on trial); if it is unusable, fall back to
        previous. True if active loaded."""
        try:
            s.model = self._load_version(s.store, active.version, warmup=True, isolated=on_trial)
            s.serving_artifact = active.artifact_id
            return True
        except EdgefleetError as exc:
            s.last_error = self._error(exc, f"active version {active.artifact_id} is unusable")
            s.failed = (active.artifact_id, exc.code)
            log.error("event=active_unusable slot=%s code=%s", s.store.slot, exc.code)
        previous = s.store.read_previous()
        if previous is None:
            s.state = sm.error("active_unusable")  # a new assignment (even of the same artifact) repairs it
            return False
        try:
            s.model = self._load_version(s.store, previous.version, warmup=True)
        except EdgefleetError as exc:
            s.last_error = self._error(exc, "neither the active nor the previous version is usable")
            s.state = sm.error("no_usable_version")
            return False
        s.store.rollback(at=self._now().isoformat())
        s.store.clear_trial()
        s.serving_artifact = previous.artifact_id
        s.state = sm.rolled_back("active_unusable")
        return False

    # apply
    def apply(self, state: DesiredState) -> None:
        disabled = set(state.disabled_artifacts)
        with self._mutex:
            self._desired = state
            for name, s in list(self._slots.items()):
                active = s.store.read_active()
                if active is not None and active.artifact_id in disabled and name not in state.slots:
                    self._rollback(s, "artifact_disabled", count=False)
            for name, assignment in sorted(state.slots.items()):
                s = self._slot(name)
                try:
                    self._apply_slot(s, assignment, disabled)
                except EdgefleetError as exc:  # never raise per-slot failures to the coordinator
                    s.last_error = self._error(exc, exc.message)
                    s.state = sm.failed(exc.code)
                    s.failed = (assignment.artifact_id, exc.code)
            self.tick()

    def _apply_slot(self, s: _Slot, assignment: Assignment, disabled: set[str]) -> None:
        store = s.store
        a = self._fetcher.resolve(assignment)  # the manifest the assignment names, parsed once
        key = version_key(a.manifest)
        decision = sm.decide_apply(
            artifact_id=a.artifact_id,
            version=key,
            active=store.read_active(),
            loaded=s.model is not None,
            disabled=frozenset(disabled),
            rejections=store.read_refusals().get(a.artifact_id, 0),
            max_rollbacks=self._config.max_rollbacks,
        )
        if decision.action == "keep":
            return
        if decision.action == "rollback_disabled":
            self._rollback(s, "artifact_disabled", count=False)
            return
        if decision.action == "refuse":
            assert decision.state is not None
            assert decision.failure_code is not None
            s.state = decision.state
            s.failed = (a.artifact_id, decision.failure_code)
            if decision.message:
                s.last_error = {
                    "code": decision.failure_code,
                    "message": decision.message,
                    "at": self._now().isoformat(),
                }
            return
        attempt = secrets.token_hex(8)
        self._journal(s, attempt, event="begin", artifact_id=a.artifact_id, version=key)
        s.state = sm.INSTALLING
        try:
            self._attempt(s, attempt, a, key)
        except _StepFailed as failed:
            store.clear_staging()
            counts = sm.failure_counts(failed.step)
            self._journal(
                s,
                attempt,
                event="failed",
                step=failed.step,
                code=failed.error.code,
                **({"count": True} if counts else {}),
            )
            self._report_step(
                StepRecord(
                    store.slot,
                    attempt,
                    a.artifact_id,
                    failed.step,
                    ok=False,
                    error_code=failed.error.code,
                    duration_ms=failed.duration_ms,
                )
            )
            if counts:  # journaled first: recover() recounts (idempotently) if a crash cuts here
                store.count_rollback(a.artifact_id, attempt=attempt)
            s.last_error = self._error(failed.error, failed.error.message)
            s.state = sm.failed(failed.error.code, judged=counts)
            s.failed = (a.artifact_id, failed.error.code)
            log.warning(
                "event=install_failed slot=%s artifact=%s step=%s code=%s",
                store.slot,
                a.artifact_id,
                failed.step,
                failed.error.code,
            )
            return

    def _step(
        self, s: _Slot, attempt: str, a: ResolvedAssignment, name: str, fn: Callable[[], T], **extra: object
    ) -> T:
        self._crash(f"before:{name}")
        started = time.perf_counter()
        try:
            result = fn()
        except EdgefleetError as exc:
            raise _StepFailed(name, exc, _ms_since(started)) from exc
        except OSError as exc:
            error = (
                DiskFullError(f"disk full during {name}", got=str(exc))
                if exc.errno == errno.ENOSPC
                else EdgefleetError(f"{name}: {exc}", code="io_error", got=str(exc))
            )
            raise _StepFailed(name, error, _ms_since(started)) from exc
        duration_ms = _ms_since(started)
        self._journal(s, attempt, event="done", step=name, **extra)
        reused = extra.get("reused")
        self._report_step(
            StepRecord(
                s.store.slot,
                attempt,
                a.artifact_id,
                name,
                ok=True,
                duration_ms=duration_ms,
                reused=reused if isinstance(reused, bool) else None,
            )
        )
        self._crash(f"after:{name}")
        return result

    def _report_step(self, record: StepRecord) -> None:
        try:
            self._steps.step(record)
        except Exception:  # telemetry never breaks an install
            log.exception("event=step_report_failed step=%s", record.step)

    def _attempt(self, s: _Slot, attempt: str, a: ResolvedAssignment, key: str) -> None:
        store = s.store
        manifest = a.manifest
        reused = store.has_version(key) and _verifies(store, key)
        staged: Path | None = None

        def download() -> None:
            nonlocal staged
            if not reused:
                staged = store.new_staging()
                self._fetcher.fetch(a, staged / "files")

        def verify() -> None:
            # Each byte is hashed once on the way in (by the fetcher while writing it, or by ``_verifies``
            # for a version already on disk), once more just before the switch, and at load. The manifest
            # is the one the assignment names by hash (``resolve``): there is no second copy to compare.
            if not reused:
                assert staged is not None
                _check_staged(manifest, staged / "files")

        def stage() -> None:
            if staged is not None:
                store.install_staged(staged, manifest)

        self._step(s, attempt, a, "download", download, reused=reused)
        self._step(s, attempt, a, "verify", verify)
        self._step(s, attempt, a, "stage", stage)
        model = self._step(
            s, attempt, a, "load", lambda: self._load_version(store, key, warmup=False, isolated=True)
        )
        golden = store.files_dir(key) / manifest.health_check.golden_file
        try:
            s.last_health = self._step(
                s,
                attempt,
                a,
                "health",
                lambda: run_health_check(model, golden, manifest.health_check, self._config.health),
            )
            self._step(s, attempt, a, "switch", lambda: self._switch(s, attempt, a, key, model))
        except _StepFailed:
            model.cancel()
            raise

    def _switch(self, s: _Slot, attempt: str, a: ResolvedAssignment, key: str, model: LoadedModel) -> None:
        """Re-verify the installed files (a change after verification fails here), then switch."""
        store = s.store
        store.verify(key)
        now = self._now().isoformat()
        trial = TrialState(
            version=key,
            artifact_id=a.artifact_id,
            attempt=attempt,
            started_at=now,
            model_version=f"{a.manifest.model}/{a.manifest.version}",
        )
        keep_previous = s.trial is not None  # replacing a version on trial: previous stays the last good one
        store.write_trial(trial.to_dict())
        pointer = Pointer(key, a.artifact_id, a.manifest.release_counter, now)
        store.switch(pointer, keep_previous=keep_previous)
        s.model, s.serving_artifact = model, a.artifact_id  # old model is dropped once in-flight calls end
        s.trial = trial
        s.state = sm.TRIAL
        log.info("event=switched slot=%s artifact=%s", store.slot, a.artifact_id)

    # trial
    def tick(self) -> None:
        """Judge every trial now: commit, keep going, or roll back. Call it periodically."""
        with self._mutex:
            for s in self._slots.values():
                if s.trial is not None:
                    self._judge_trial(s)

    def _judge_trial(self, s: _Slot) -> None:
        assert s.trial is not None
        with s.counters:
            snapshot = TrialState.from_dict(s.trial.to_dict())
        judged = sm.judge_trial(snapshot, self._config.trial_for(s.store.slot), self._now())
        if judged.action == "commit":
            self._commit(s, snapshot)
        elif judged.action == "rollback":
            self._rollback(s, judged.reason, count=True)
        else:
            s.store.write_trial(snapshot.to_dict())

    def _commit(self, s: _Slot, trial: TrialState) -> None:
        self._crash("before:commit")
        self._journal(s, trial.attempt, event="done", step="commit")
        self._journal(s, trial.attempt, event="committed")
        self._report_step(StepRecord(s.store.slot, trial.attempt, trial.artifact_id, "commit", ok=True))
        s.store.clear_trial()
        s.trial = None
        s.state = sm.COMMITTED
        if self._isolated_for is not None:
            self._serve_in_process(s, trial.version)
        if s.failed is not None and s.failed[0] == trial.artifact_id:
            s.failed = None
        self._crash("after:commit")
        removed = s.store.gc(max_removals=self._config.gc_max_removals)
        log.info(
            "event=committed slot=%s artifact=%s gc_removed=%d", s.store.slot, trial.artifact_id, len(removed)
        )

    def _serve_in_process(self, s: _Slot, key: str) -> None:
        """After the commit, the version leaves its trial worker: loaded in-process (the worker stops). Kept
        in the worker when that load fails (it keeps serving; the next start loads it in-process)."""
        try:
            model = self._load_version(s.store, key, warmup=False)
        except EdgefleetError as exc:
            log.warning("event=commit_in_process_load_failed slot=%s code=%s", s.store.slot, exc.code)
            return
        old, s.model = s.model, model
        if old is not None:
            old.close()

    def model_crashed(self, slot: str, version: str, how: str) -> bool:
        """The trial worker running ``version`` in ``slot`` died on its own (``how``: ``SIGSEGV``, ...):
        the version on trial crashed its runtime. Roll back, counted. True when it rolled back."""
        with self._mutex:
            s = self._slots.get(slot)
            if s is None or s.trial is None or s.trial.version != version:
                return False
            log.error("event=trial_model_crashed slot=%s artifact=%s exit=%s", slot, s.trial.artifact_id, how)
            rolled = self._rollback(s, "trial_model_crashed", count=True)
            if rolled:
                s.last_error = {
                    "code": "trial_model_crashed",
                    "message": f"the version on trial crashed its worker process ({how}); rolled back",
                    "details": {"exit": how},
                    "at": self._now().isoformat(),
                }
            return rolled

    def trial_version(self, slot: str) -> str | None:
        """The version key on trial in ``slot`` (what the serving layer runs in the trial worker). Never
        blocks."""
        s = self._slots.get(slot)
        trial = s.trial if s is not None else None
        return trial.version if trial is not None else None

    def rollback(self, slot: str, reason: str = "operator") -> bool:
        """Re-activate ``previous`` now (without the network). False when it is missing or corrupt."""
        with self._mutex:
            return self._rollback(self._slot(slot), reason, count=False)

    def _rollback(self, s: _Slot, reason: str, *, count: bool, attempt: str | None = None) -> bool:
        """Verify and load ``previous``, journal the decision, then switch back (``_finish_rollback``). False
        (and the current version kept) when there is no usable previous version."""
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
            s.state = sm.kept(reason, "no_previous")
            s.failed = (active.artifact_id, reason) if active else None
            s.last_error = {"code": "no_previous_version", "message": f"cannot roll back ({reason})"}
            return False
        try:
            model = self._load_version(store, intent.to_version, warmup=True)
        except EdgefleetError as exc:
            store.clear_trial()
            s.state = sm.kept(reason, "previous_corrupt")
            s.failed = (active.artifact_id, reason) if active else None
            s.last_error = self._error(exc, f"previous version is unusable; kept the current one ({reason})")
            log.error("event=rollback_impossible slot=%s code=%s", store.slot, exc.code)
            return False
        self._crash("rollback:start")
        self._journal(s, intent.attempt, **intent.to_record())
        self._crash("rollback:journaled")
        self._finish_rollback(s, intent)
        s.model, s.serving_artifact = model, intent.to_artifact
        log.warning("event=rolled_back slot=%s to=%s reason=%s", store.slot, intent.to_artifact, reason)
        return True

    def _finish_rollback(self, s: _Slot, intent: RollbackIntent) -> None:
        """The durable part of a journaled rollback; idempotent, so ``recover()`` can run it again."""
        store = s.store
        if intent.count:
            store.count_rollback(intent.from_artifact, attempt=intent.attempt)
        active = store.read_active()
        if active is None or active.version != intent.to_version:
            store.rollback(at=self._now().isoformat())
        else:
            store.drop_previous_if_active()  # cut between the replace of active and the removal of previous
        self._crash("rollback:previous_removed")
        self._journal(s, intent.attempt, event="rolled_back", code=intent.reason)
        self._crash("rollback:end")
        store.clear_trial()
        s.trial = None
        s.state = sm.rolled_back(intent.reason)
        s.failed = (intent.from_artifact, intent.reason) if intent.from_artifact else None
        s.last_error = {
            "code": intent.reason,
            "message": f"rolled back from {intent.from_artifact or '?'}",
        }

    # helpers
    def _load_version(
        self, store: SlotStore, key: str, *, warmup: bool, isolated: bool = False
    ) -> LoadedModel:
        """Load an installed version: re-hashed first with ``warmup`` (at load), in the trial worker when
        ``isolated`` and the installer has one (a candidate, a version on trial), else in-process."""
        manifest = store.verify(key) if warmup else store.read_manifest(key)
        options = LoadOptions(
            execution_providers=tuple(manifest.runtime.execution_providers),
            intra_op_threads=self._config.threads.intra_op,
            inter_op_threads=self._config.threads.inter_op,
            warmup_runs=manifest.health_check.warmup_runs if warmup else 0,
        )
        runtime = manifest.runtime.name
        use_worker = isolated and self._isolated_for is not None
        adapter = (
            self._isolated_for(runtime)
            if use_worker and self._isolated_for
            else self._adapter_for_runtime(runtime)
        )
        return adapter.load(store.files_dir(key) / manifest.entrypoint, manifest.signature, options)

    def _adapter_for_runtime(self, runtime: str) -> RuntimeAdapter:
        """The manifest's runtime (``runtime_unsupported`` when this device has none for it)."""
        if self._adapter_for is not None:
            return self._adapter_for(runtime)
        assert self._adapter is not None
        return self._adapter

    def _journal(self, s: _Slot, attempt: str, **fields: object) -> None:
        s.journal.append({"attempt": attempt, "at": self._now().isoformat(), **fields})

    def _error(self, exc: EdgefleetError, message: str) -> dict[str, object]:
        return {"code": exc.code, "message": message, "details": exc.details, "at": self._now().isoformat()}


def _model_version(store: SlotStore, key: str) -> str:
    try:
        manifest = store.read_manifest(key)
    except EdgefleetError:
        return ""
    return f"{manifest.model}/{manifest.version}"


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def _verifies(store: SlotStore, key: str) -> bool:
    try:
        store.verify(key)
    except VersionCorruptError:
        return False
    return True


def _check_staged(manifest: ArtifactManifest, files_dir: Path) -> None:
    """Every file the fetcher placed is there with its manifest length (its hash was checked as it was
    written; the switch re-hashes the installed version)."""
    for entry in manifest.files:
        try:
            size = (files_dir / entry.path).stat().st_size
        except OSError as exc:
            raise VersionCorruptError(
                f"staged file {entry.path} is missing", code="version_file_missing"
            ) from exc
        if size != entry.length:
            raise HashMismatchError(
                f"staged file {entry.path} does not match the manifest",
                expected={"length": entry.length},
                got={"length": size},
            )
