"""What the fleet overview reads: counts grouped in the database, and only the devices it lists.

At 100,000 devices, reading one row per device into the process to count them took seconds per page view.
The database groups the fleet by class, status and reported active artifacts (a few hundred groups however
large the fleet) and returns the degraded and the long-unseen devices already ordered and cut to the lists'
size, with their counts. The status is :func:`services.devices.device_status` rendered as SQL
(:func:`status_case`, from ``status_clauses``); :func:`overview_input_from_facts` is the same selection
over devices held in memory, and a test holds the two to the same answers on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from edgefleet.server.services.devices import (
    DeviceFacts,
    DeviceStatus,
    StatusThresholds,
    device_status,
    status_clauses,
)
from edgefleet.server.store.devices import DeviceRow

__all__ = [
    "FleetGroup",
    "FleetOverviewInput",
    "overview_input_from_facts",
    "read_fleet_overview",
    "status_case",
]


class FleetGroup(NamedTuple):
    hardware_class: str
    status: str
    """A ``DeviceStatus`` value."""
    report_active: str | None
    devices: int


@dataclass(frozen=True)
class FleetOverviewInput:
    groups: list[FleetGroup]
    degraded: list[DeviceFacts]
    """Not revoked, reporting degraded or error: errors first, then by id; at most the listed number."""
    degraded_count: int
    unseen: list[DeviceFacts]
    """Not revoked, silent longer than the bound (never seen first, then the longest silent, then id)."""
    unseen_count: int


def status_case(now: datetime, thresholds: StatusThresholds) -> ColumnElement[str]:
    """``device_status`` as one SQL expression over ``devices``: each status's own conditions
    (``devices.status_clauses``, mutually exclusive) as the branches of a ``CASE``."""
    return case(
        *((and_(*status_clauses(s, now=now, thresholds=thresholds)), literal(s.value)) for s in DeviceStatus),
        else_=literal(DeviceStatus.offline.value),
    )


_FACTS = (
    DeviceRow.id,
    DeviceRow.hardware_class,
    DeviceRow.last_seen_at,
    DeviceRow.revoked_at.is_not(None),
    DeviceRow.report_status,
    DeviceRow.report_active,
    DeviceRow.report_error_code,
)
_DEGRADED = ("degraded", "error")


def read_fleet_overview(
    session: Session, *, now: datetime, thresholds: StatusThresholds, unseen_after_s: float, max_listed: int
) -> FleetOverviewInput:
    """The overview's input in four statements, in one transaction; decommissioned devices are not part
    of the fleet."""
    in_fleet = DeviceRow.decommissioned_at.is_(None)
    status = status_case(now, thresholds).label("status")
    degraded = and_(in_fleet, DeviceRow.revoked_at.is_(None), DeviceRow.report_status.in_(_DEGRADED))
    unseen_before = now - timedelta(seconds=unseen_after_s)
    unseen = and_(
        in_fleet,
        DeviceRow.revoked_at.is_(None),
        or_(DeviceRow.last_seen_at.is_(None), DeviceRow.last_seen_at < unseen_before),
    )
    with session.begin():
        groups = [
            FleetGroup(r[0], r[1], r[2], int(r[3]))
            for r in session.execute(
                select(DeviceRow.hardware_class, status, DeviceRow.report_active, func.count())
                .where(in_fleet)
                .group_by(DeviceRow.hardware_class, status, DeviceRow.report_active)
            )
        ]
        degraded_rows = session.execute(
            select(*_FACTS)
            .where(degraded)
            .order_by(case((DeviceRow.report_status == "error", 0), else_=1), DeviceRow.id)
            .limit(max_listed)
        ).all()
        unseen_rows = session.execute(
            select(*_FACTS)
            .where(unseen)
            .order_by(
                case((DeviceRow.last_seen_at.is_(None), 0), else_=1), DeviceRow.last_seen_at, DeviceRow.id
            )
            .limit(max_listed)
        ).all()
        degraded_count = int(session.execute(select(func.count()).where(degraded)).scalar_one())
        unseen_count = int(session.execute(select(func.count()).where(unseen)).scalar_one())
    return FleetOverviewInput(
        groups,
        [_facts(r) for r in degraded_rows],
        degraded_count,
        [_facts(r) for r in unseen_rows],
        unseen_count,
    )


def _facts(row: Any) -> DeviceFacts:
    return DeviceFacts(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6])


def overview_input_from_facts(
    facts: Iterable[DeviceFacts],
    *,
    now: datetime,
    thresholds: StatusThresholds,
    unseen_after_s: float,
    max_listed: int,
) -> FleetOverviewInput:
    """Pure: :func:`read_fleet_overview`'s selection over devices held in memory (tests, and the reference
    the SQL is held to)."""
    counts: Counter[tuple[str, str, str | None]] = Counter()
    degraded: list[DeviceFacts] = []
    unseen: list[tuple[float, DeviceFacts]] = []
    for d in facts:
        status = device_status(last_seen_at=d.last_seen_at, revoked=d.revoked, now=now, thresholds=thresholds)
        counts[(d.hardware_class, status.value, d.report_active)] += 1
        if d.revoked:
            continue
        if d.report_status in _DEGRADED:
            degraded.append(d)
        silent_s = None if d.last_seen_at is None else (now - d.last_seen_at).total_seconds()
        if silent_s is None or silent_s > unseen_after_s:
            unseen.append((float("inf") if silent_s is None else silent_s, d))
    degraded.sort(key=lambda d: (d.report_status != "error", d.id))
    unseen.sort(key=lambda t: (-t[0], t[1].id))
    return FleetOverviewInput(
        [FleetGroup(c, s, a, n) for (c, s, a), n in counts.items()],
        degraded[:max_listed],
        len(degraded),
        [d for _, d in unseen[:max_listed]],
        len(unseen),
    )
