"""Telemetry ingest and retention.

Over 450 lines: ingest writes the raw windows, the per-minute and per-hour rollups, the reporters
(``telemetry_reporters``) and the device state in one transaction, under the same row locks, and the
retention prunes the same tables; read together.

Ingest is idempotent on ``(device, boot_id, sequence)``: the records already stored are acknowledged again
and not counted again, so a device whose acknowledgement was lost can simply resend. Identity is the
authenticated device (the request signature); a batch naming another device is refused.

Time: windows are stored on the server's clock. A batch carries ``sent_at`` (device clock); the difference
to the server's receive time is the device's clock offset, applied to every window of the batch (so a device
whose clock is off by hours still lands in the right place, as long as its clock did not jump between the
window and the upload). Ordering never uses wall time: records are keyed and listed by sequence.
Reading lives in ``services.fleet_health`` and ``services.device_telemetry`` (exact sums in
``services.telemetry_sums``); the Prometheus text in ``api.prometheus``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import ConflictError, PermissionDeniedError
from edgefleet.protocol.telemetry import (
    SHADOW_SUM_FIELDS,
    ShadowStats,
    TelemetryBatch,
    TelemetryRecord,
    merge_counts,
)
from edgefleet.server.services.alerts.outbox import emit
from edgefleet.server.services.alerts.rules import security_dedup_key
from edgefleet.server.services.field_health import update_field_state
from edgefleet.server.services.telemetry_reporters import Reporter, record_reporters
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import (
    TelemetryDeviceRow,
    TelemetryEventRow,
    TelemetryHourRollupRow,
    TelemetryModelWindowRow,
    TelemetryReporterRow,
    TelemetryRollupRow,
    TelemetryWindowRow,
)

__all__ = [
    "Freshness",
    "IngestResult",
    "ingest_batch",
    "merge_shadow_stats",
    "prune_telemetry",
    "shadow_stats_json",
]


@dataclass(frozen=True)
class Freshness:
    """When a device's telemetry counts as stale: its newest window ended more than this long ago."""

    stale_after_s: float = 300.0
    retention_s: float = 30 * 86400.0


@dataclass
class IngestResult:
    acked: dict[str, list[int]] = field(default_factory=dict)
    accepted: int = 0
    duplicates: int = 0
    expired: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "expired": self.expired,
        }


# --- shadow statistics (pure) ---------------------------------------------------------------------------

# ``compared`` and ``agreement_sum`` have columns of their own; the rest of the sums go in the JSON.
_SHADOW_SUMS = tuple(f for f in SHADOW_SUM_FIELDS if f not in ("compared", "agreement_sum"))
_SHADOW_MAXES = ("abs_diff_max",)
_SHADOW_HISTOGRAMS = ("active_latency", "candidate_latency")


def shadow_stats_json(stats: ShadowStats) -> dict[str, Any]:
    """The stored form of a window's shadow statistics beyond ``compared``/``agreement_sum`` (which have
    columns of their own): only the known fields, zeros left out, so an old agent's window stores ``{}``."""
    out: dict[str, Any] = {}
    for name in (*_SHADOW_SUMS, *_SHADOW_MAXES):
        value = getattr(stats, name)
        if value:
            out[name] = value
    if stats.errors_by_code:
        out["errors_by_code"] = dict(stats.errors_by_code)
    for name in _SHADOW_HISTOGRAMS:
        histogram = getattr(stats, name)
        if histogram.buckets:
            out[name] = {
                "buckets": {str(k): v for k, v in histogram.buckets.items()},
                "sum_ms": histogram.sum_ms,
                "max_ms": histogram.max_ms,
            }
    return out


def merge_shadow_stats(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    """Add stored shadow statistics ``more`` into ``into`` exactly: counts and sums add, maxima take the
    max, histograms add bucket by bucket. Missing fields are zero; ``into`` never shares a dict with
    ``more``."""
    for name in _SHADOW_SUMS:
        if more.get(name):
            into[name] = into.get(name, 0) + more[name]
    for name in _SHADOW_MAXES:
        if more.get(name):
            into[name] = max(into.get(name, 0.0), more[name])
    if more.get("errors_by_code"):
        merge_counts(into.setdefault("errors_by_code", {}), more["errors_by_code"])
    for name in _SHADOW_HISTOGRAMS:
        histogram = more.get(name)
        if not histogram:
            continue
        target = into.setdefault(name, {"buckets": {}, "sum_ms": 0.0, "max_ms": 0.0})
        merge_counts(target["buckets"], histogram.get("buckets") or {})
        target["sum_ms"] += histogram.get("sum_ms", 0.0)
        target["max_ms"] = max(target["max_ms"], histogram.get("max_ms", 0.0))


# --- ingest -----------------------------------------------------------------------------------------------


def ingest_batch(
    session: Session, device: DeviceRow, batch: TelemetryBatch, *, now: datetime, freshness: Freshness
) -> IngestResult:
    """Store the new records of ``batch`` for the authenticated ``device``; acknowledge all of them."""
    if batch.device_id != device.id:
        raise PermissionDeniedError(
            "a batch may only carry the sending device's own telemetry",
            code="device_mismatch",
            expected=device.id,
            got=batch.device_id[:64],
        )
    for attempt in range(2):
        try:
            return _ingest(session, device, batch, now=now, freshness=freshness)
        except IntegrityError as exc:  # the same records arrived concurrently; the retry sees them stored
            session.rollback()
            if attempt == 1:
                raise ConflictError("telemetry ingest raced twice", code="telemetry_conflict") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _ingest(
    session: Session, device: DeviceRow, batch: TelemetryBatch, *, now: datetime, freshness: Freshness
) -> IngestResult:
    offset = now - batch.sent_at
    oldest_kept = now - timedelta(seconds=freshness.retention_s)
    result = IngestResult()
    keys = list(dict.fromkeys(batch.keys()))
    with session.begin():
        stored = _stored_keys(session, device.id, keys)
        new_windows: list[tuple[TelemetryWindowRow, TelemetryRecord]] = []
        newest_end: datetime | None = None
        seen: set[tuple[str, int]] = set()
        for record in batch.records:
            key = (record.boot_id, record.sequence)
            result.acked.setdefault(record.boot_id, []).append(record.sequence)
            if key in stored or key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            if record.window is not None:
                window = record.window
                end_at = min(window.end_at + offset, now)
                start_at = min(window.start_at + offset, end_at)
                if end_at < oldest_kept:
                    result.expired += 1
                    continue
                row = TelemetryWindowRow(
                    device_id=device.id,
                    hardware_class=device.hardware_class,
                    boot_id=record.boot_id,
                    sequence=record.sequence,
                    start_at=start_at,
                    end_at=end_at,
                    device_end_at=window.end_at,
                    received_at=now,
                    late_s=max(0.0, (now - end_at).total_seconds()),
                    degraded_s=dict(window.degraded_s),
                    resources=window.resources.model_dump(mode="json") if window.resources else None,
                )
                session.add(row)
                new_windows.append((row, record))
                newest_end = end_at if newest_end is None else max(newest_end, end_at)
            elif record.event is not None:
                event = record.event
                session.add(
                    TelemetryEventRow(
                        device_id=device.id,
                        boot_id=record.boot_id,
                        sequence=record.sequence,
                        at=min(event.at + offset, now),
                        received_at=now,
                        kind=event.kind,
                        code=event.code,
                        details=dict(event.details),
                    )
                )
                if event.kind == "security":  # the device refused something signed: an alert, once a window
                    emit(
                        session,
                        "security",
                        subject=device.id,
                        now=now,
                        dedup_key=security_dedup_key(event.code, device.id, now),
                        payload={
                            "code": event.code,
                            "device_id": device.id,
                            "hardware_class": device.hardware_class,
                            "source": "device",
                            "at": min(event.at + offset, now).isoformat(),
                            "details": dict(event.details),
                        },
                    )
            result.accepted += 1
        session.flush()  # window ids
        for row, record in new_windows:
            assert record.window is not None
            for model in record.window.models:
                session.add(
                    TelemetryModelWindowRow(
                        window_id=row.id,
                        device_id=device.id,
                        hardware_class=device.hardware_class,
                        model_version=model.model_version,
                        site=_site(device),
                        end_at=row.end_at,
                        requests=model.requests,
                        errors=model.errors,
                        errors_by_code=dict(model.errors_by_code),
                        requests_by_rung=dict(model.requests_by_rung),
                        latency_buckets={str(k): v for k, v in model.latency.buckets.items()},
                        latency_sum_ms=model.latency.sum_ms,
                        latency_max_ms=model.latency.max_ms,
                        shadow_compared=model.shadow.compared,
                        shadow_agreement_sum=model.shadow.agreement_sum,
                        shadow_stats=shadow_stats_json(model.shadow),
                        health_passed=model.health_checks.passed,
                        health_failed=model.health_checks.failed,
                        health_failed_by_code=dict(model.health_checks.failed_by_code),
                        input_faults=model.input_faults,
                        input_faults_by_code=dict(model.input_faults_by_code),
                    )
                )
        _roll_up(session, device, new_windows)
        _update_device_state(session, device.id, batch, result, newest_end=newest_end, now=now)
        update_field_state(session, device.id, new_windows, offset=offset, now=now)
    return result


_ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_faults",
    "latency_sum_ms",
    "shadow_compared",
    "shadow_agreement_sum",
    "health_passed",
    "health_failed",
)
_ROLLUP_MAPS = (
    "errors_by_code",
    "requests_by_rung",
    "latency_buckets",
    "health_failed_by_code",
    "input_faults_by_code",
)


def _empty_cell() -> dict[str, Any]:
    return {
        **dict.fromkeys(_ROLLUP_SUMS, 0),
        **{name: {} for name in (*_ROLLUP_MAPS, "degraded_s")},
        "latency_max_ms": 0.0,
        "max_late_s": 0.0,
        "shadow_stats": {},
    }


def _site(device: DeviceRow) -> str:
    """The device's ``site`` label as rollups and model windows store it (``""``: none)."""
    return str(device.labels.get("site", ""))[:128]


def _roll_up(
    session: Session, device: DeviceRow, new_windows: list[tuple[TelemetryWindowRow, TelemetryRecord]]
) -> None:
    """Add this batch's model windows to the per-minute and per-hour rollups (under row locks; a concurrent
    first insert of the same key raises IntegrityError, and the caller retries the whole ingest), and move
    each model version's newest window end (``telemetry_reporters``)."""
    site = _site(device)
    batch_cells: dict[tuple[datetime, str, str, str], dict[str, Any]] = {}
    ends: dict[Reporter, datetime] = {}
    for row, record in new_windows:
        assert record.window is not None
        minute = row.end_at.replace(second=0, microsecond=0)
        # Window-level figures (degraded time, lateness) on the class/site row with model_version "".
        whole = batch_cells.setdefault((minute, device.hardware_class, "", site), _empty_cell())
        merge_counts(whole["degraded_s"], row.degraded_s)
        whole["max_late_s"] = max(whole["max_late_s"], row.late_s)
        for model in record.window.models:
            reporter = (device.id, model.model_version, device.hardware_class, site)
            ends[reporter] = max(ends.get(reporter, row.end_at), row.end_at)
            key = (minute, device.hardware_class, model.model_version, site)
            cell = batch_cells.setdefault(key, _empty_cell())
            for name, value in (
                ("requests", model.requests),
                ("errors", model.errors),
                ("latency_sum_ms", model.latency.sum_ms),
                ("shadow_compared", model.shadow.compared),
                ("shadow_agreement_sum", model.shadow.agreement_sum),
                ("health_passed", model.health_checks.passed),
                ("health_failed", model.health_checks.failed),
                ("input_faults", model.input_faults),
            ):
                cell[name] += value
            cell["latency_max_ms"] = max(cell["latency_max_ms"], model.latency.max_ms)
            for name, counts in (
                ("errors_by_code", model.errors_by_code),
                ("requests_by_rung", model.requests_by_rung),
                ("latency_buckets", {str(k): v for k, v in model.latency.buckets.items()}),
                ("health_failed_by_code", model.health_checks.failed_by_code),
                ("input_faults_by_code", model.input_faults_by_code),
            ):
                merge_counts(cell.setdefault(name, {}), counts)
            merge_shadow_stats(cell["shadow_stats"], shadow_stats_json(model.shadow))
    _upsert_cells(session, TelemetryRollupRow, "minute_at", batch_cells)
    hours: dict[tuple[datetime, str, str, str], dict[str, Any]] = {}
    for key, cell in batch_cells.items():
        _merge_cell(hours.setdefault((key[0].replace(minute=0), *key[1:]), _empty_cell()), cell)
    _upsert_cells(session, TelemetryHourRollupRow, "hour_at", hours)
    record_reporters(session, ends)


def _merge_cell(into: dict[str, Any], cell: dict[str, Any]) -> None:
    for name in _ROLLUP_SUMS:
        into[name] += cell[name]
    for name in ("latency_max_ms", "max_late_s"):
        into[name] = max(into[name], cell[name])
    for name in (*_ROLLUP_MAPS, "degraded_s"):
        merge_counts(into[name], cell[name])
    merge_shadow_stats(into["shadow_stats"], cell["shadow_stats"])


def _upsert_cells(
    session: Session,
    table: type[TelemetryRollupRow] | type[TelemetryHourRollupRow],
    time_column: str,
    cells: dict[tuple[datetime, str, str, str], dict[str, Any]],
) -> None:
    """Add ``cells`` to the rollup rows of ``table`` (under row locks; a concurrent first insert of the same
    key raises IntegrityError, and the caller retries the whole ingest)."""
    for key, cell in cells.items():
        stored = cast(
            "TelemetryRollupRow | TelemetryHourRollupRow | None",
            session.get(table, key, with_for_update=True),
        )
        if stored is None:
            session.add(
                table(
                    **{time_column: key[0]}, hardware_class=key[1], model_version=key[2], site=key[3], **cell
                )
            )
            continue
        for name in _ROLLUP_SUMS:
            setattr(stored, name, getattr(stored, name) + cell[name])
        stored.latency_max_ms = max(stored.latency_max_ms, cell["latency_max_ms"])
        stored.max_late_s = max(stored.max_late_s, cell["max_late_s"])
        for name in (*_ROLLUP_MAPS, "degraded_s"):
            merged = dict(getattr(stored, name) or {})
            merge_counts(merged, cell[name])
            setattr(stored, name, merged)  # a new dict: the JSON column sees the change
        if cell["shadow_stats"]:
            shadow: dict[str, Any] = {}
            merge_shadow_stats(shadow, stored.shadow_stats or {})
            merge_shadow_stats(shadow, cell["shadow_stats"])
            stored.shadow_stats = shadow


def _stored_keys(session: Session, device_id: str, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    if not keys:
        return out
    for table in (TelemetryWindowRow, TelemetryEventRow):
        rows = session.execute(
            select(table.boot_id, table.sequence).where(
                table.device_id == device_id, tuple_(table.boot_id, table.sequence).in_(keys)
            )
        )
        out.update((str(b), int(s)) for b, s in rows)
    return out


def _update_device_state(
    session: Session,
    device_id: str,
    batch: TelemetryBatch,
    result: IngestResult,
    *,
    newest_end: datetime | None,
    now: datetime,
) -> None:
    state = session.get(TelemetryDeviceRow, device_id, with_for_update=True)
    if state is None:
        state = TelemetryDeviceRow(
            device_id=device_id,
            dropped={},
            queue_bytes=0,
            queue_records=0,
            last_batch_at=now,
            last_window_end_at=None,
            records_accepted=0,
            records_duplicate=0,
        )
        session.add(state)
    dropped = dict(state.dropped or {})
    for name, count in batch.dropped.items():  # cumulative on the device: keep the largest seen
        dropped[name] = max(int(dropped.get(name, 0)), count)
    state.dropped = dropped
    state.queue_bytes = batch.queue_bytes
    state.queue_records = batch.queue_records
    state.last_batch_at = now
    if newest_end is not None and (state.last_window_end_at is None or newest_end > state.last_window_end_at):
        state.last_window_end_at = newest_end
    state.records_accepted = (state.records_accepted or 0) + result.accepted
    state.records_duplicate = (state.records_duplicate or 0) + result.duplicates


# --- retention and export -------------------------------------------------------------------------------


_HOUR = timedelta(hours=1)


def prune_telemetry(session: Session, *, now: datetime, freshness: Freshness) -> int:
    """Delete windows and events older than the retention. Returns the number of rows deleted."""
    cutoff = now - timedelta(seconds=freshness.retention_s)
    with session.begin():
        deleted = 0
        for stmt in (
            delete(TelemetryModelWindowRow).where(TelemetryModelWindowRow.end_at < cutoff),
            delete(TelemetryWindowRow).where(TelemetryWindowRow.end_at < cutoff),
            delete(TelemetryEventRow).where(TelemetryEventRow.received_at < cutoff),
            delete(TelemetryRollupRow).where(TelemetryRollupRow.minute_at < cutoff),
            delete(TelemetryReporterRow).where(TelemetryReporterRow.last_end_at < cutoff),
            # an hour that still overlaps the retention is kept whole
            delete(TelemetryHourRollupRow).where(TelemetryHourRollupRow.hour_at <= cutoff - _HOUR),
        ):
            # a bulk DELETE answers a CursorResult (it has rowcount); Session.execute is typed as Result
            deleted += cast("CursorResult[Any]", session.execute(stmt)).rowcount or 0
    return deleted
