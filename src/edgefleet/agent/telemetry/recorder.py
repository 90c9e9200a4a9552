"""The recorder the rest of the agent calls: windowed, mergeable summaries instead of raw events.

Hot path (``record_request``): one lock, a few dict increments, no allocation of documents, no IO. A window
closes when the injected monotonic ``clock`` passes its end (checked on every call and by ``tick()``); the
closed window is turned into a ``TelemetryWindow`` (a msgspec struct, ``protocol.wire.telemetry``) and
appended to the durable queue *outside* the lock by the thread that closed it. Events go to the queue at once
(they are rare and some must never be lost).

Telemetry never breaks serving: a failing queue write is counted (``write_failures``) and logged, not raised.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, cast

import msgspec

from edgefleet.agent.telemetry.resources import ResourceSampler
from edgefleet.protocol.telemetry_kinds import (
    EVENT_KINDS,
    PRIORITY_BY_EVENT_KIND,
    PRIORITY_METRICS,
    EventKind,
    ShadowSample,
    error_kind,
    latency_bucket_index,
)
from edgefleet.protocol.wire.telemetry import (
    EventRecord,
    HealthChecks,
    LatencyHistogram,
    ModelWindow,
    ShadowStats,
    SlotStatus,
    TelemetryWindow,
    to_body,
)
from edgefleet.trust.events import SecurityEvent

__all__ = [
    "MAX_MODELS",
    "OVERFLOW_MODEL",
    "RecordSink",
    "SecuritySinkAdapter",
    "SlotState",
    "TelemetryRecorder",
]

log = logging.getLogger(__name__)

MAX_MODELS = 16
OVERFLOW_MODEL = "other"
"""Model versions beyond ``MAX_MODELS`` in one window are summed under this name (bounded memory)."""
_MAX_KEY_CHARS = 64
_MAX_DETAIL_KEYS = 32
_MAX_DETAIL_CHARS = 512
_MAX_SHADOW_CODES = 63
"""distinct candidate error codes per window and version; more are counted as ``other``"""


class RecordSink(Protocol):
    """Where records go: ``TelemetryQueue`` is the real one."""

    def append(
        self, *, boot_id: str, kind: str, label: str, priority: int, body: dict[str, Any]
    ) -> int | None: ...


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _code(value: str | None, default: str = "unknown") -> str:
    """Codes and rung names are bounded and restricted on the wire; sanitize once at the edge."""
    if not value:
        return default
    text = "".join(c if (c.isalnum() and c.isascii()) or c in "_.:-" else "_" for c in value.lower())
    return text[:_MAX_KEY_CHARS] or default


SlotState = tuple[str | None, str | None]
"""a slot's update status and failure code, as the installer reports them"""


@dataclass
class _Field:
    """The served slot's field state across windows (never reset while the agent runs)."""

    model_version: str | None = None
    last_success_at: datetime | None = None
    last_request_at: datetime | None = None
    requests: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class _ModelAcc:
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    input_faults: dict[str, int] = field(default_factory=dict)
    last_success_at: datetime | None = None
    rungs: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, int] = field(default_factory=dict)
    sum_ms: float = 0.0
    max_ms: float = 0.0
    shadow: ShadowStats | None = None
    """the window's shadow comparisons when this version is a candidate (created on the first one)"""
    health_passed: int = 0
    health_failed: int = 0
    health_codes: dict[str, int] = field(default_factory=dict)

    def to_window(self, model_version: str) -> ModelWindow:
        return ModelWindow(
            model_version=model_version,
            requests=self.requests,
            errors_by_code=dict(self.errors),
            input_faults_by_code=dict(self.input_faults),
            last_success_at=self.last_success_at,
            requests_by_rung=dict(self.rungs),
            latency=LatencyHistogram(
                buckets=dict(self.buckets), sum_ms=float(self.sum_ms), max_ms=float(self.max_ms)
            ),
            shadow=self.shadow if self.shadow is not None else ShadowStats(),
            health_checks=HealthChecks(
                passed=self.health_passed, failed=self.health_failed, failed_by_code=dict(self.health_codes)
            ),
        )


@dataclass
class _Window:
    start_mono: float
    end_mono: float
    start_at: datetime
    models: dict[str, _ModelAcc] = field(default_factory=dict)
    degraded_s: dict[str, float] = field(default_factory=dict)


class TelemetryRecorder:
    """Thread-safe. ``clock`` is monotonic seconds (closes windows); ``wall_clock`` only labels them."""

    def __init__(
        self,
        sink: RecordSink,
        *,
        boot_id: str,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        resources: ResourceSampler | None = None,
        served_slot: str = "default",
    ) -> None:
        """Every ``record_request`` is a request of ``served_slot`` (the agent serves one slot)."""
        if not 1.0 <= window_s <= 3600.0:
            raise ValueError(f"window_s must be in [1, 3600], got {window_s}")
        self._sink = sink
        self.boot_id = boot_id
        self.window_s = float(window_s)
        self._clock = clock
        self._wall = wall_clock
        self._resources = resources
        self.served_slot = served_slot
        self._field = _Field()
        self._last_success_by_version: dict[str, datetime] = {}
        self._slot_states: Callable[[], dict[str, SlotState]] | None = None
        self._lock = threading.Lock()
        self._window = self._open(clock())
        self.write_failures = 0
        self.windows_written = 0

    # --- the API the serving and install code calls ---------------------------------------------------

    def record_request(
        self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None
    ) -> None:
        """One request. An error code of kind ``input`` (``protocol.telemetry_kinds.error_kind``) is an input
        fault: counted apart, never as a request or an error of the model, and without a latency."""
        now = self._clock()
        kind = error_kind(error_code) if error_code is not None else None
        at = self._wall() if kind is None else None
        with self._lock:
            closed = self._roll_locked(now)
            acc = self._model_locked(model_version)
            state = self._field
            state.requests += 1
            state.last_request_at = self._wall() if at is None else at
            if kind is not None:
                state.errors_by_kind[kind] = state.errors_by_kind.get(kind, 0) + 1
            if kind == "input":
                key = _code(error_code)
                acc.input_faults[key] = acc.input_faults.get(key, 0) + 1
            else:
                if at is not None:
                    state.model_version = model_version
                    state.last_success_at = acc.last_success_at = at
                    self._last_success_by_version[model_version[:_MAX_KEY_CHARS]] = at
                acc.requests += 1
                rung_key = _code(rung, "default")
                acc.rungs[rung_key] = acc.rungs.get(rung_key, 0) + 1
                if error_code is not None:
                    key = _code(error_code)
                    acc.errors[key] = acc.errors.get(key, 0) + 1
                index = latency_bucket_index(latency_ms)
                acc.buckets[index] = acc.buckets.get(index, 0) + 1
                if latency_ms > 0 and math.isfinite(latency_ms):
                    acc.sum_ms += latency_ms
                    if latency_ms > acc.max_ms:
                        acc.max_ms = latency_ms
        if closed is not None:
            self._write_window(closed)

    def set_slot_states(self, source: Callable[[], dict[str, SlotState]]) -> None:
        """Where each window reads the slots' update status (the installer's slot reports)."""
        self._slot_states = source

    def record_shadow(
        self, agreement: float | bool, *, model_version: str = "unknown", sample: ShadowSample | None = None
    ) -> None:
        """One shadow comparison of a candidate ``model_version``; ``agreement`` in [0, 1] (or a bool).
        ``sample`` adds its statistics (rows, top-1 matches, rows within tolerance, abs differences, the
        latency of both models) to the window's mergeable ``ShadowStats``."""
        value = float(agreement)
        if not math.isfinite(value):
            value = 0.0
        value = min(1.0, max(0.0, value))
        self._update(model_version, lambda acc: _shadow_of(acc).add(value, sample))

    def record_shadow_error(self, model_version: str, error_code: str) -> None:
        """A sampled request the candidate ``model_version`` failed to answer (its error code)."""
        key = _code(error_code, "shadow_failed")

        def apply(acc: _ModelAcc) -> None:
            errors = _shadow_of(acc).errors_by_code
            name = key if key in errors or len(errors) < _MAX_SHADOW_CODES else "other"
            errors[name] = errors.get(name, 0) + 1

        self._update(model_version, apply)

    def record_shadow_skipped(self, model_version: str) -> None:
        """A sampled request not compared: the candidate was already ``max_pending`` comparisons behind."""

        def apply(acc: _ModelAcc) -> None:
            _shadow_of(acc).skipped_budget += 1

        self._update(model_version, apply)

    def record_health_check(self, model_version: str, *, passed: bool, error_code: str | None = None) -> None:
        def apply(acc: _ModelAcc) -> None:
            if passed:
                acc.health_passed += 1
            else:
                acc.health_failed += 1
                key = _code(error_code, "health_check_failed")
                acc.health_codes[key] = acc.health_codes.get(key, 0) + 1

        self._update(model_version, apply)

    def record_degraded_time(self, rung: str, seconds: float) -> None:
        if not (seconds > 0 and math.isfinite(seconds)):
            return
        now = self._clock()
        with self._lock:
            closed = self._roll_locked(now)
            key = _code(rung, "default")
            self._window.degraded_s[key] = self._window.degraded_s.get(key, 0.0) + float(seconds)
        if closed is not None:
            self._write_window(closed)

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None:
        """Queue an event now. ``kind`` is one of ``EVENT_KINDS`` (unknown kinds become ``other``).
        Returns the queue sequence, or ``None`` if it was dropped or could not be written."""
        kind = kind if kind in EVENT_KINDS else "other"
        event = EventRecord(
            at=self._wall(), kind=cast(EventKind, kind), code=_code(code), details=_bounded_details(details)
        )
        return self._append(
            kind="event",
            label=f"event.{kind}",
            priority=PRIORITY_BY_EVENT_KIND[kind],
            body=to_body(event),
        )

    # --- window lifecycle --------------------------------------------------------------------------

    def tick(self) -> bool:
        """Close the current window if its time is up (call this from a timer). True if one closed."""
        with self._lock:
            closed = self._roll_locked(self._clock())
        if closed is not None:
            self._write_window(closed)
            return True
        return False

    def flush(self) -> None:
        """Close the current window now (shutdown)."""
        now = self._clock()
        with self._lock:
            closed = self._window
            closed.end_mono = max(closed.start_mono, now)
            self._window = self._open(now)
        self._write_window(closed)

    def _open(self, now: float) -> _Window:
        return _Window(start_mono=now, end_mono=now + self.window_s, start_at=self._wall())

    def _roll_locked(self, now: float) -> _Window | None:
        current = self._window
        if now < current.end_mono:
            return None
        # The next window starts where this one ended, skipping whole idle periods nobody ticked through.
        skipped = math.floor((now - current.end_mono) / self.window_s)
        start = current.end_mono + skipped * self.window_s
        nxt = _Window(start_mono=start, end_mono=start + self.window_s, start_at=self._wall())
        self._window = nxt
        return current

    def _model_locked(self, model_version: str) -> _ModelAcc:
        key = model_version[:_MAX_KEY_CHARS] or "unknown"
        acc = self._window.models.get(key)
        if acc is None:
            if len(self._window.models) >= MAX_MODELS:
                key = OVERFLOW_MODEL
                acc = self._window.models.get(key)
            if acc is None:
                acc = self._window.models[key] = _ModelAcc(
                    last_success_at=self._last_success_by_version.get(key)
                )
        return acc

    def _update(self, model_version: str, apply: Callable[[_ModelAcc], None]) -> None:
        now = self._clock()
        with self._lock:
            closed = self._roll_locked(now)
            apply(self._model_locked(model_version))
        if closed is not None:
            self._write_window(closed)

    def _write_window(self, window: _Window) -> None:
        duration = timedelta(seconds=max(0.0, window.end_mono - window.start_mono))
        resources = None
        if self._resources is not None:
            try:
                resources = self._resources.sample()
            except Exception:  # a broken sensor must not lose the window
                log.exception("resource sampling failed")
        doc = TelemetryWindow(
            start_at=window.start_at,
            end_at=window.start_at + duration,
            models=[acc.to_window(name) for name, acc in sorted(window.models.items())],
            degraded_s=dict(window.degraded_s),
            resources=resources,
            slots=self._slots(),
        )
        if (
            self._append(kind="window", label="window", priority=PRIORITY_METRICS, body=to_body(doc))
            is not None
        ):
            self.windows_written += 1

    def _slots(self) -> list[SlotStatus]:
        states: dict[str, SlotState] = {}
        if self._slot_states is not None:
            try:
                states = dict(self._slot_states())
            except Exception:  # a broken status source must not lose the window
                log.exception("slot status failed")
        with self._lock:
            state = self._field
            served = SlotStatus(
                slot=self.served_slot[:_MAX_KEY_CHARS],
                model_version=state.model_version[:_MAX_KEY_CHARS] if state.model_version else None,
                last_success_at=state.last_success_at,
                last_request_at=state.last_request_at,
                requests=state.requests,
                errors_by_kind=dict(state.errors_by_kind),
            )
        out = []
        for slot in sorted({self.served_slot, *states})[:16]:
            status, failure = states.get(slot, (None, None))
            base = served if slot == self.served_slot else SlotStatus(slot=slot[:_MAX_KEY_CHARS])
            out.append(
                msgspec.structs.replace(
                    base,
                    update_status=_code(status) if status else None,
                    update_failure_code=_code(failure) if failure else None,
                )
            )
        return out

    def _append(self, *, kind: str, label: str, priority: int, body: dict[str, Any]) -> int | None:
        try:
            return self._sink.append(
                boot_id=self.boot_id, kind=kind, label=label, priority=priority, body=body
            )
        except Exception:  # telemetry never breaks serving; the failure is counted
            self.write_failures += 1
            log.exception("telemetry queue write failed")
            return None


class SecuritySinkAdapter:
    """Feeds ``trust.events.SecurityEvent``s into the recorder as kept (``security``) events."""

    def __init__(self, recorder: TelemetryRecorder) -> None:
        self._recorder = recorder

    def record(self, event: SecurityEvent) -> None:
        self._recorder.record_event("security", event.code, {"message": event.message, **event.details})


def _shadow_of(acc: _ModelAcc) -> ShadowStats:
    if acc.shadow is None:
        acc.shadow = ShadowStats()
    return acc.shadow


def _bounded_details(details: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in list((details or {}).items())[:_MAX_DETAIL_KEYS]:
        name = str(key)[:_MAX_KEY_CHARS]
        if isinstance(value, bool) or value is None:
            out[name] = value
        elif isinstance(value, int):  # an IntEnum too: its number, as the model's JSON dump gave it
            out[name] = int(value)
        elif isinstance(value, float):  # numpy's float64 too (msgspec writes only plain floats)
            out[name] = float(value) if math.isfinite(value) else None
        else:
            out[name] = str(value)[:_MAX_DETAIL_CHARS]
    return out
