"""Devices after enrollment: authenticated requests, reports, status, revocation, pins."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Table, Update, bindparam, delete, or_, select, tuple_, update
from sqlalchemy.orm import Session, undefer

from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.protocol.desired_state import MAX_REPORT_BYTES, DeviceReport
from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError
from edgefleet.protocol.hardware_class import RuntimeSpec
from edgefleet.protocol.request_signing import MAX_CLOCK_SKEW_S
from edgefleet.protocol.selector import Selector
from edgefleet.server.services.audit import record
from edgefleet.server.services.desired_state import device_runtimes
from edgefleet.server.services.device_reports import REPORTING_DEVICE, ReportingDevice, report_columns
from edgefleet.server.services.device_updates import slots_behind
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.services.fit import check_device_runs
from edgefleet.server.services.inventory import InventoryFilter
from edgefleet.server.store.devices import DeviceNonceRow, DeviceRow, PinRow
from edgefleet.server.store.pages import Page, paginate
from edgefleet.server.store.registry import ArtifactRow

__all__ = [
    "NONCE_PRUNE_BATCH_ROWS",
    "DeviceFacts",
    "DeviceStatus",
    "StatusThresholds",
    "accept_report",
    "device_status",
    "device_to_wire",
    "get_device",
    "list_devices",
    "nonce_retention",
    "pin_artifact",
    "prune_nonces",
    "revoke_device",
    "status_clauses",
]

_SLOT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class DeviceStatus(str, enum.Enum):
    online = "online"
    stale = "stale"
    offline = "offline"
    revoked = "revoked"


@dataclass(frozen=True)
class StatusThresholds:
    stale_after_s: float = 120.0
    offline_after_s: float = 900.0


def device_status(
    *, last_seen_at: datetime | None, revoked: bool, now: datetime, thresholds: StatusThresholds
) -> DeviceStatus:
    """Pure: online until ``stale_after_s`` without contact, stale until ``offline_after_s``, then offline."""
    if revoked:
        return DeviceStatus.revoked
    if last_seen_at is None:
        return DeviceStatus.offline
    silent_s = (now - last_seen_at).total_seconds()
    if silent_s <= thresholds.stale_after_s:
        return DeviceStatus.online
    if silent_s <= thresholds.offline_after_s:
        return DeviceStatus.stale
    return DeviceStatus.offline


NONCE_PRUNE_BATCH_ROWS = 5000


def nonce_retention(max_skew_s: int = MAX_CLOCK_SKEW_S) -> timedelta:
    """How long a nonce must be kept: a request seen at ``t`` carries a timestamp no older than
    ``t - max_skew_s``, and that timestamp is refused once the server's clock passes it by ``max_skew_s``,
    so after ``2 * max_skew_s`` a replay fails the timestamp check and the nonce is no longer needed."""
    return timedelta(seconds=2 * max_skew_s)


def prune_nonces(
    session: Session,
    *,
    now: datetime,
    max_skew_s: int = MAX_CLOCK_SKEW_S,
    max_rows: int = NONCE_PRUNE_BATCH_ROWS,
) -> int:
    """Forget at most ``max_rows`` of the oldest nonces past their retention (see ``nonce_retention``), in
    one short transaction; returns how many went. Call again while it returns ``max_rows``."""
    cutoff = now - nonce_retention(max_skew_s)
    oldest = (
        select(DeviceNonceRow.device_id, DeviceNonceRow.nonce)
        .where(DeviceNonceRow.seen_at < cutoff)
        .order_by(DeviceNonceRow.seen_at)
        .limit(max_rows)
    )
    with session.begin():
        # a bulk DELETE answers a CursorResult (it has rowcount); Session.execute is typed as Result
        result = cast(
            "CursorResult[Any]",
            session.execute(
                delete(DeviceNonceRow)
                .where(tuple_(DeviceNonceRow.device_id, DeviceNonceRow.nonce).in_(oldest))
                .execution_options(synchronize_session=False)
            ),
        )
    return int(result.rowcount or 0)


def accept_report(
    session: Session,
    device_id: str,
    body: Any,
    *,
    now: datetime,
    authenticate: Callable[[ReportingDevice | None], ReportingDevice] | None = None,
) -> bool:
    """Keep the newest report; an older or repeated (boot, sequence) is acknowledged and ignored.

    ``authenticate``: the caller's check of the signed request on the row read here (``body`` is then the
    raw request body, parsed once the request is authenticated): one transaction reads, checks and writes.
    Core statements: one read of the columns it needs (not the report JSON), one UPDATE of the report's.
    """
    report = DeviceReport.parse(body) if authenticate is None else None
    with session.begin():
        row = session.execute(REPORTING_DEVICE, {"device_id": device_id}).first()
        found = ReportingDevice(*row) if row is not None else None
        if authenticate is not None:
            found = authenticate(found)
            raw = parse_json_bounded(body, max_bytes=MAX_REPORT_BYTES, what="device report")
            report = DeviceReport.parse(raw)
        if found is None or report is None:
            raise NotFoundError("no such device", code="device_not_found", got=device_id)
        if found.report_boot_id == report.boot_id and report.sequence <= found.report_sequence:
            return False
        columns = report_columns(report)
        if report.runtimes is not None and columns["report"].get("runtimes") != found.reported_runtimes:
            # what the device can run changed: its assignments are re-judged
            bump_director_epoch(session, devices=[[found.id]])
        columns["last_seen_at"] = now
        session.execute(_report_write(tuple(columns)), {**columns, "device_id": found.id})
    return True


@functools.lru_cache(maxsize=8)
def _report_write(names: tuple[str, ...]) -> Update:
    """``accept_report``'s UPDATE of these columns of one device (built once per set of names)."""
    table = cast("Table", DeviceRow.__table__)
    values = {name: bindparam(name, type_=table.c[name].type) for name in names}
    return update(table).where(table.c.id == bindparam("device_id")).values(values)


def get_device(session: Session, device_id: str) -> DeviceRow:
    with session.begin():
        device = session.get(DeviceRow, device_id[:32], options=[undefer(DeviceRow.report)])
    if device is None:
        raise NotFoundError("no such device", code="device_not_found", got=device_id[:80])
    return device


class DeviceFacts(NamedTuple):
    """What a fleet overview needs of one device: no labels, no key, no JSON report (its summary columns).
    A named tuple: an overview reads one per device of the fleet."""

    id: str
    hardware_class: str
    last_seen_at: datetime | None
    revoked: bool
    report_status: str | None = None
    report_active: str | None = None
    """``slot=artifact_id`` pairs joined by ``;``"""
    report_error_code: str | None = None


def list_devices(
    session: Session,
    *,
    limit: int,
    offset: int,
    hardware_class: str | None = None,
    labels: dict[str, str] | None = None,
    selector: Selector | None = None,
    inventory: InventoryFilter | None = None,
    status: DeviceStatus | None = None,
    include_decommissioned: bool = False,
    now: datetime,
    thresholds: StatusThresholds,
) -> Page[DeviceRow]:
    """Class, status and decommissioning filter in SQL (status is a range on ``last_seen_at``, the same
    rule as ``device_status``); labels, the selector and the inventory filter, stored as JSON, are matched
    in Python over what SQL selected, reading only ids, labels and the inventory summary before loading the
    page's rows. Decommissioned devices are left out unless ``include_decommissioned``."""
    stmt = select(DeviceRow).options(undefer(DeviceRow.report)).order_by(DeviceRow.enrolled_at, DeviceRow.id)
    if not include_decommissioned:
        stmt = stmt.where(DeviceRow.decommissioned_at.is_(None))
    if hardware_class is not None:
        stmt = stmt.where(DeviceRow.hardware_class == hardware_class)
    if status is not None:
        stmt = stmt.where(*status_clauses(status, now=now, thresholds=thresholds))
    if not labels and selector is None and not inventory:
        with session.begin():
            return paginate(session, stmt, limit=limit, offset=offset)
    keys = stmt.with_only_columns(
        DeviceRow.id, DeviceRow.labels, DeviceRow.inventory, DeviceRow.agent_version
    )
    with session.begin():
        matching = [
            r.id
            for r in session.execute(keys)
            if all(r.labels.get(k) == v for k, v in (labels or {}).items())
            and (selector is None or selector.matches(r.labels))
            and (not inventory or inventory.matches(r.inventory, r.agent_version))
        ]
        page_ids = matching[offset : offset + limit]
        rows = (
            {r.id: r for r in session.execute(stmt.where(DeviceRow.id.in_(page_ids))).scalars()}
            if page_ids
            else {}
        )
    return Page(
        items=[rows[i] for i in page_ids if i in rows], total=len(matching), limit=limit, offset=offset
    )


def status_clauses(status: DeviceStatus, *, now: datetime, thresholds: StatusThresholds) -> list[Any]:
    """SQL conditions equivalent to ``device_status(...) is status``."""
    stale_from = now - timedelta(seconds=thresholds.stale_after_s)
    offline_from = now - timedelta(seconds=thresholds.offline_after_s)
    alive = DeviceRow.revoked_at.is_(None)
    if status is DeviceStatus.revoked:
        return [DeviceRow.revoked_at.is_not(None)]
    if status is DeviceStatus.online:
        return [alive, DeviceRow.last_seen_at >= stale_from]
    if status is DeviceStatus.stale:
        return [alive, DeviceRow.last_seen_at < stale_from, DeviceRow.last_seen_at >= offline_from]
    return [alive, or_(DeviceRow.last_seen_at.is_(None), DeviceRow.last_seen_at < offline_from)]


def revoke_device(session: Session, device_id: str, *, reason: str, actor: str, now: datetime) -> DeviceRow:
    with session.begin():
        device = session.get(DeviceRow, device_id[:32])
        if device is None:
            raise NotFoundError("no such device", code="device_not_found", got=device_id[:80])
        if device.revoked_at is None:
            device.revoked_at = now
            device.revoked_reason = reason[:2000]
            bump_director_epoch(session, devices=[[device.id]])  # every replica's poll cache drops it
        record(
            session,
            actor=actor,
            action="device.revoke",
            target=device.id,
            now=now,
            details={"reason": reason},
        )
    return device


def pin_artifact(
    session: Session,
    *,
    scope: str,
    target: str,
    slot: str,
    artifact_id: str | None,
    actor: str,
    now: datetime,
) -> None:
    """Pin (or with ``artifact_id=None`` unpin) an artifact for a class or a device, in one slot."""
    if scope not in ("class", "device"):
        raise InvalidDocumentError("scope must be class or device", code="invalid_scope", got=scope)
    if not _SLOT.fullmatch(slot):
        raise InvalidDocumentError("invalid slot name", code="invalid_name", expected=_SLOT.pattern, got=slot)
    with session.begin():
        device: DeviceRow | None = None
        if scope == "device":
            device = session.get(DeviceRow, target[:32])
            if device is None:
                raise NotFoundError("no such device", code="device_not_found", got=target[:80])
            hardware_class = device.hardware_class
        else:
            hardware_class = target
        existing = session.execute(
            select(PinRow).where(PinRow.scope == scope, PinRow.target == target, PinRow.slot == slot)
        ).scalar_one_or_none()
        if artifact_id is None:
            if existing is not None:
                session.delete(existing)
        else:
            artifact = session.get(ArtifactRow, artifact_id[:20])
            if artifact is None:
                raise NotFoundError("no such artifact", code="artifact_not_found", got=artifact_id[:80])
            if artifact.hardware_class != hardware_class:
                raise InvalidDocumentError(
                    "artifact is built for another hardware class",
                    code="wrong_hardware_class",
                    expected=hardware_class,
                    got=artifact.hardware_class,
                )
            if artifact.disabled:
                raise InvalidDocumentError("artifact is disabled", code="artifact_disabled", got=artifact.id)
            if device is not None:  # a device pin: its runtimes, as it last reported them, must run it
                check_device_runs(
                    RuntimeSpec.model_validate(artifact.manifest.get("runtime") or {}),
                    device_runtimes(device),
                )
            if existing is None:
                session.add(
                    PinRow(
                        scope=scope,
                        target=target,
                        slot=slot,
                        artifact_id=artifact.id,
                        created_at=now,
                        created_by=actor,
                    )
                )
            else:
                existing.artifact_id = artifact.id
                existing.created_at = now
                existing.created_by = actor
        # a device pin touches that device, a class pin the devices of that class
        bump_director_epoch(
            session,
            devices=[[target]]
            if scope == "device"
            else [select(DeviceRow.id).where(DeviceRow.hardware_class == target)],
        )
        record(
            session,
            actor=actor,
            action="pin.set" if artifact_id else "pin.clear",
            target=f"{scope}:{target}",
            now=now,
            details={"slot": slot, "artifact_id": artifact_id},
        )


def device_to_wire(row: DeviceRow, *, now: datetime, thresholds: StatusThresholds) -> dict[str, Any]:
    status = device_status(
        last_seen_at=row.last_seen_at, revoked=row.revoked_at is not None, now=now, thresholds=thresholds
    )
    return {
        "id": row.id,
        "hardware_class": row.hardware_class,
        "labels": row.labels,
        "serial": row.serial,
        "status": status.value,
        "enrolled_at": row.enrolled_at.isoformat(),
        "last_seen_at": row.last_seen_at.isoformat() if row.last_seen_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revoked_reason": row.revoked_reason,
        "agent_version": row.agent_version,
        "inventory": row.inventory,
        "decommissioned_at": row.decommissioned_at.isoformat() if row.decommissioned_at else None,
        "desired_generation": row.desired_generation,
        "report": row.report,
        "behind": slots_behind(row.report),
    }
