"""Apply an assignment to a slot, executed: ``machine.decide_apply`` says keep, refuse, roll back or install;
an install attempt runs the journaled steps download -> verify -> stage -> load -> health -> switch, then the
version is on trial (``conclude`` ends it).

Until the switch, the old version keeps serving untouched; the switch is one atomic replace of the ``active``
pointer and one reference swap in memory (no serving gap). Each journaled step is also reported to a
``StepSink`` (telemetry: one update event per step per attempt). Crash points: ``before:<step>`` /
``after:<step>`` of each journaled step, and those of ``SlotStore``.
"""

from __future__ import annotations

import errno
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edgefleet.agent.install import machine as sm
from edgefleet.agent.install.conclude import rollback
from edgefleet.agent.install.executor import Executor, SlotRun
from edgefleet.agent.install.fetch import ResolvedAssignment
from edgefleet.agent.install.health import run_health_check
from edgefleet.agent.install.machine import Pointer
from edgefleet.agent.install.slots import SlotStore, VersionCorruptError, version_key
from edgefleet.agent.install.steps import StepRecord, TransferReport
from edgefleet.agent.install.trial import TrialState
from edgefleet.agent.runtime.base import LoadedModel
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.desired_state import Assignment
from edgefleet.protocol.wire.manifest import ArtifactManifest
from edgefleet.trust.errors import DiskFullError, HashMismatchError

__all__ = ["apply_slot"]

log = logging.getLogger("edgefleet.agent.install")
T = TypeVar("T")


class _StepFailed(Exception):
    def __init__(self, step: str, error: EdgefleetError, duration_ms: float = 0.0) -> None:
        super().__init__(step)
        self.step = step
        self.error = error
        self.duration_ms = duration_ms


def apply_slot(
    ex: Executor,
    s: SlotRun,
    assignment: Assignment,
    disabled: frozenset[str],
    switch_allowed: Callable[[], bool] = lambda: True,
) -> None:
    """``switch_allowed`` is asked once the candidate is staged (the update window, ``installer``): when it
    says no, the attempt ends ``deferred`` and the slot is ``pending:window`` until a later attempt, which
    reuses the staged version, finds it open."""
    store = s.store
    a = ex.fetcher.resolve(assignment)  # the manifest the assignment names, parsed once
    key = version_key(a.manifest)
    decision = sm.decide_apply(
        artifact_id=a.artifact_id,
        version=key,
        active=store.read_active(),
        loaded=s.loaded,
        disabled=disabled,
        rejections=store.read_refusals().get(a.artifact_id, 0),
        max_rollbacks=ex.config.max_rollbacks,
    )
    if decision.action == "keep":
        return
    if decision.action == "rollback_disabled":
        rollback(ex, s, "artifact_disabled", count=False)
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
                "at": ex.now().isoformat(),
            }
        return
    attempt = secrets.token_hex(8)
    ex.journal(s, attempt, event="begin", artifact_id=a.artifact_id, version=key)
    s.state = sm.INSTALLING
    try:
        _attempt(ex, s, attempt, a, key, switch_allowed)
    except _StepFailed as failed:
        _failed(ex, s, attempt, a, failed)


def _failed(ex: Executor, s: SlotRun, attempt: str, a: ResolvedAssignment, failed: _StepFailed) -> None:
    store = s.store
    store.clear_staging()
    counts = sm.failure_counts(failed.step)
    code = failed.error.code
    ex.journal(s, attempt, event="failed", step=failed.step, code=code, **({"count": True} if counts else {}))
    ex.report_step(
        StepRecord(
            store.slot,
            attempt,
            a.artifact_id,
            failed.step,
            ok=False,
            error_code=code,
            duration_ms=failed.duration_ms,
        )
    )
    if counts:  # journaled first: recovery recounts (idempotently) if a crash cuts here
        store.count_rollback(a.artifact_id, attempt=attempt)
    s.last_error = ex.error(failed.error, failed.error.message)
    s.state = sm.failed(code, judged=counts)
    s.failed = (a.artifact_id, code)
    log.warning(
        "event=install_failed slot=%s artifact=%s step=%s code=%s",
        store.slot,
        a.artifact_id,
        failed.step,
        code,
    )


def _step(
    ex: Executor,
    s: SlotRun,
    attempt: str,
    a: ResolvedAssignment,
    name: str,
    fn: Callable[[], T],
    **extra: object,
) -> T:
    ex.crash(f"before:{name}")
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
    ex.journal(s, attempt, event="done", step=name, **extra)
    reused = extra.get("reused")
    transfer = _transfer_of(ex.fetcher) if name == "download" and reused is False else None
    ex.report_step(
        StepRecord(
            s.store.slot,
            attempt,
            a.artifact_id,
            name,
            ok=True,
            duration_ms=duration_ms,
            reused=reused if isinstance(reused, bool) else None,
            full_bytes=transfer.full_bytes if transfer else None,
            bytes_downloaded=transfer.bytes_downloaded if transfer else None,
            delta_files=transfer.delta_files if transfer else None,
            delta_fallbacks=dict(transfer.fallbacks) if transfer and transfer.fallbacks else None,
        )
    )
    ex.crash(f"after:{name}")
    return result


def _attempt(
    ex: Executor,
    s: SlotRun,
    attempt: str,
    a: ResolvedAssignment,
    key: str,
    switch_allowed: Callable[[], bool],
) -> None:
    store = s.store
    manifest = a.manifest
    reused = store.has_version(key) and _verifies(store, key)
    staged: Path | None = None

    def download() -> None:
        nonlocal staged
        if not reused:
            staged = store.new_staging()
            ex.fetcher.fetch(a, staged / "files")

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

    _step(ex, s, attempt, a, "download", download, reused=reused)
    _step(ex, s, attempt, a, "verify", verify)
    _step(ex, s, attempt, a, "stage", stage)
    if not switch_allowed():  # downloads any time; load, health check and switch inside the window
        ex.journal(s, attempt, event="deferred", code="window")
        s.state, s.deferred_artifact = sm.PENDING_WINDOW, a.artifact_id
        log.info("event=switch_deferred slot=%s artifact=%s why=window", store.slot, a.artifact_id)
        return
    model = _step(ex, s, attempt, a, "load", lambda: ex.load_version(store, key, warmup=False, isolated=True))
    golden = store.files_dir(key) / manifest.health_check.golden_file
    try:
        s.last_health = _step(
            ex,
            s,
            attempt,
            a,
            "health",
            lambda: run_health_check(model, golden, manifest.health_check, ex.config.health),
        )
        _step(ex, s, attempt, a, "switch", lambda: _switch(ex, s, attempt, a, key, model))
    except _StepFailed:
        model.cancel()
        raise


def _switch(
    ex: Executor, s: SlotRun, attempt: str, a: ResolvedAssignment, key: str, model: LoadedModel
) -> None:
    """Re-verify the installed files (a change after verification fails here), then switch."""
    store = s.store
    store.verify(key)
    now = ex.now().isoformat()
    trial = TrialState(
        version=key,
        artifact_id=a.artifact_id,
        attempt=attempt,
        started_at=now,
        model_version=f"{a.manifest.model}/{a.manifest.version}",
    )
    keep_previous = s.trial is not None  # replacing a version on trial: previous stays the last good one
    store.write_trial(trial.to_dict())
    store.switch(Pointer(key, a.artifact_id, a.manifest.release_counter, now), keep_previous=keep_previous)
    ex.hold(s, model, a.artifact_id)
    s.deferred_artifact = None
    s.trial = trial
    s.state = sm.TRIAL
    log.info("event=switched slot=%s artifact=%s", store.slot, a.artifact_id)


def _transfer_of(fetcher: object) -> TransferReport | None:
    """The fetcher's report of what its last fetch downloaded, when it keeps one (the TUF fetcher does)."""
    report = getattr(fetcher, "last_transfer", None)
    return report if isinstance(report, TransferReport) else None


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
