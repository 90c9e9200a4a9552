"""A device report's columns on the device row: its JSON and the summaries that lists filter on."""

from __future__ import annotations

from typing import Any

from edgefleet.protocol.desired_state import DeviceReport
from edgefleet.server.services.inventory import inventory_summary

__all__ = ["active_summary", "report_columns"]


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
