"""Install telemetry: slot changes (updates, rollbacks, health checks) and journaled install steps as events.

* ``ObservedInstaller`` wraps the installer and records what changed in its slot reports after each call;
* ``StepEvents`` is the installer's ``StepSink``: each journaled step of each attempt (download, verify,
  stage, load, health, switch, commit) becomes one ``update`` event, ``install_<step>_done`` or
  ``install_<step>_failed`` (bounded: one event per step per attempt).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from edgefleet.agent.install.interface import Installer
from edgefleet.agent.install.machine import Phase
from edgefleet.agent.install.steps import StepRecord
from edgefleet.protocol.wire.desired_state import DesiredState, SlotReport

__all__ = ["ObservedInstaller", "SlotEventSink", "StepEvents", "step_event", "while_swapping"]


class SlotEventSink(Protocol):
    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None: ...

    def record_health_check(
        self, model_version: str, *, passed: bool, error_code: str | None = None
    ) -> None: ...


class _Tickable(Installer, Protocol):
    def tick(self) -> None: ...

    def record_inference(self, slot: str, *, ok: bool) -> None: ...

    def heartbeat(self, slot: str) -> None: ...

    def on_trial(self, slot: str) -> str | None: ...

    def trial_version(self, slot: str) -> str | None: ...

    def model_crashed(self, slot: str, version: str, how: str) -> bool: ...


class ObservedInstaller:
    """Delegates to ``inner`` and records what changed in its slot reports after each call."""

    def __init__(self, inner: _Tickable, sink: SlotEventSink) -> None:
        self._inner = inner
        self._sink = sink
        self.desired: dict[str, str] = {}
        """Slot -> artifact id of the last desired state applied (what the director asks for now)."""
        self.after_change: list[Callable[[], None]] = []
        """Called after every apply and tick (the serving layer re-reads the active pointer)."""
        self._lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._swapping: set[str] = set()
        """Slots rolled back after a model crash whose serving has not yet reloaded the previous version."""
        self._last: dict[str, SlotReport] = inner.slot_reports()

    def apply(self, state: DesiredState) -> None:
        self.desired = {slot: a.artifact_id for slot, a in state.slots.items()}
        self._inner.apply(state)
        self._observe()

    def tick(self) -> None:
        self._inner.tick()
        self._observe()

    def trial_version(self, slot: str) -> str | None:
        return self._inner.trial_version(slot)

    def model_crashed(self, slot: str, version: str, how: str) -> bool:
        """Roll back, then let serving reload the previous version (``after_change``); until it has, the
        slot's report says ``rolling_back:<reason>`` (``while_swapping``), never ``rolled_back``."""
        with self._swap_lock:
            self._swapping.add(slot)
        try:
            rolled = self._inner.model_crashed(slot, version, how)
            if rolled:
                self._observe()
        finally:
            with self._swap_lock:
                self._swapping.discard(slot)
        return rolled

    def wants_retry(self) -> bool:
        return self._inner.wants_retry()

    def retry(self) -> bool:
        retried = self._inner.retry()
        if retried:
            self._observe()
        return retried

    def record_inference(self, slot: str, *, ok: bool) -> None:
        self._inner.record_inference(slot, ok=ok)

    def heartbeat(self, slot: str) -> None:
        self._inner.heartbeat(slot)

    def on_trial(self, slot: str) -> str | None:
        return self._inner.on_trial(slot)

    def slot_reports(self) -> dict[str, SlotReport]:
        reports = self._inner.slot_reports()
        with self._swap_lock:
            swapping = set(self._swapping)
        return {slot: while_swapping(r) if slot in swapping else r for slot, r in reports.items()}

    def _observe(self) -> None:
        with self._lock:
            now = self._inner.slot_reports()
            for slot, report in now.items():
                before = self._last.get(slot, SlotReport())
                for kind, code, details in slot_events(slot, before, report):
                    self._sink.record_event(kind, code, details)
                new_failure = report.failed_artifact and (
                    (report.failed_artifact, report.failure_code)
                    != (before.failed_artifact, before.failure_code)
                )
                if new_failure and report.failure_code and report.failure_code.startswith("health"):
                    self._sink.record_health_check(
                        report.failed_artifact or "", passed=False, error_code=report.failure_code
                    )
                if report.active and report.active != before.active and report.active != before.previous:
                    self._sink.record_health_check(report.active, passed=True)
            self._last = now
        for callback in self.after_change:
            callback()


def while_swapping(report: SlotReport) -> SlotReport:
    """Pure: ``report`` while serving has not yet swapped to the version a rollback re-activated:
    ``rolled_back:<reason>`` reads ``rolling_back:<reason>`` (state and ``behind``)."""

    def pending(value: str | None) -> str | None:
        done = f"{Phase.ROLLED_BACK.value}:"
        if value and value.startswith(done):
            return f"{Phase.ROLLING_BACK.value}:{value[len(done) :]}"
        return value

    return msgspec.structs.replace(report, state=pending(report.state), behind=pending(report.behind))


def slot_events(slot: str, before: SlotReport, after: SlotReport) -> list[tuple[str, str, dict[str, Any]]]:
    """Pure: the telemetry events one slot's report change stands for."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    if after.active != before.active:
        rolled_back = after.active is not None and after.active == before.previous
        kind, code = ("rollback", "rolled_back") if rolled_back else ("update", "activated")
        events.append((kind, code, {"slot": slot, "from": before.active, "to": after.active}))
    if after.failed_artifact and (after.failed_artifact, after.failure_code) != (
        before.failed_artifact,
        before.failure_code,
    ):
        events.append(
            (
                "update",
                after.failure_code or "install_failed",
                {"slot": slot, "artifact": after.failed_artifact},
            )
        )
    return events


class _EventSink(Protocol):
    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None: ...


def step_event(record: StepRecord) -> tuple[str, str, dict[str, Any]]:
    """Pure: the telemetry event for one journaled install step."""
    details: dict[str, Any] = {
        "slot": record.slot,
        "artifact": record.artifact_id,
        "attempt": record.attempt,
        "step": record.step,
        "duration_ms": record.duration_ms,
    }
    if record.reused is not None:
        details["reused"] = record.reused
    if record.full_bytes is not None:
        details["full_bytes"] = record.full_bytes
        details["bytes_downloaded"] = record.bytes_downloaded
        details["delta_files"] = record.delta_files
    if record.delta_fallbacks:  # event details are flat scalars: "path=reason;path=reason"
        details["delta_fallbacks"] = ";".join(f"{p}={r}" for p, r in sorted(record.delta_fallbacks.items()))
    if not record.ok:
        details["error_code"] = record.error_code
    outcome = "done" if record.ok else "failed"
    return "update", f"install_{record.step}_{outcome}", details


class StepEvents:
    """The installer's ``StepSink``: one ``update`` event per step per attempt, to telemetry."""

    def __init__(self, sink: _EventSink) -> None:
        self._sink = sink

    def step(self, record: StepRecord) -> None:
        kind, code, details = step_event(record)
        self._sink.record_event(kind, code, details)
