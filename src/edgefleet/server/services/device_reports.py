"""A device report's columns on the device row: its JSON and the summaries that lists filter on."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, select

from edgefleet.protocol.desired_state import DeviceReport
from edgefleet.server.services.desired_state import REPORTED_RUNTIMES
from edgefleet.server.services.inventory import inventory_summary
from edgefleet.server.store.devices import DeviceRow

__all__ = ["REPORTING_DEVICE", "ReportingDevice", "active_summary", "report_columns"]


class ReportingDevice(NamedTuple):
    """What accepting a report reads of the device row (``REPORTING_DEVICE``): who it is, for the
    signature check, and where its newest report stands; not the report JSON itself."""

    id: str
    public_key_pem: str
    revoked_at: datetime | None
    last_seen_at: datetime | None
    report_boot_id: str | None
    report_sequence: int
    reported_runtimes: Any
    """The ``runtimes`` of its newest report as stored (``None``: none)."""


_DEVICES = cast("Table", DeviceRow.__table__)
REPORTING_DEVICE = select(
    _DEVICES.c.id,
    _DEVICES.c.public_key_pem,
    _DEVICES.c.revoked_at,
    _DEVICES.c.last_seen_at,
    _DEVICES.c.report_boot_id,
    _DEVICES.c.report_sequence,
    REPORTED_RUNTIMES,
).where(_DEVICES.c.id == bindparam("device_id"))
"""One Core read of the columns of ``ReportingDevice`` (table columns: no ORM compile or loading step;
built once, its cache key reused)."""


def report_columns(report: DeviceReport) -> dict[str, Any]:
    """The device row's columns a report sets (its JSON and the summaries that lists filter on)."""
    body = report.to_dict()
    return {
        "report": body,
        "report_status": report.status,
        "report_active": active_summary(body),
        "report_error_code": str((report.last_error or {}).get("code") or "")[:64] or None,
        "report_boot_id": report.boot_id,
        "report_sequence": report.sequence,
        "agent_version": report.agent_version[:64],
        "inventory": inventory_summary(body),
    }


def active_summary(report: dict[str, Any]) -> str | None:
    """``slot=artifact_id`` pairs of the slots a report says are active, ``;``-joined (bounded)."""
    slots = report.get("slots") or {}
    pairs = [
        f"{name}={s['active']}"
        for name, s in sorted(slots.items())
        if isinstance(s, dict) and s.get("active")
    ]
    return ";".join(pairs)[:1000] or None
