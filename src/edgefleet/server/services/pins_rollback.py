"""Rolling one device back: pin its slot to the version its last report names as ``previous``.

The device keeps the previous version on disk (ARCHITECTURE 3.4), so the rollback costs it no download when
that version is still there; the server's part is only a device pin, checked and audited like any other pin
(``pin.set``), plus a ``device.rollback`` audit row saying what it rolled back from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from edgefleet.protocol.errors import ConflictError
from edgefleet.server.services.audit import record_alone
from edgefleet.server.services.devices import get_device, pin_artifact

__all__ = ["Rollback", "rollback_device"]


@dataclass(frozen=True)
class Rollback:
    device_id: str
    slot: str
    artifact_id: str
    """The artifact now pinned: the device's reported ``previous``."""
    rolled_back_from: str | None
    """What the device reported ``active`` in that slot."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "scope": "device",
            "target": self.device_id,
            "slot": self.slot,
            "artifact_id": self.artifact_id,
            "pinned": True,
            "rolled_back_from": self.rolled_back_from,
        }


def _reported_slot(report: dict[str, Any] | None, slot: str) -> tuple[dict[str, Any], str]:
    """The slot's part of the last report, and what to say when it names no previous version."""
    if not report:
        return {}, "no report from the device yet"
    slots = report.get("slots")
    entry = slots.get(slot) if isinstance(slots, dict) else None
    if not isinstance(entry, dict):
        return {}, f"the last report has no slot {slot!r}"
    return entry, f"slots.{slot}.previous is null"


def rollback_device(session: Session, device_id: str, *, slot: str, actor: str, now: datetime) -> Rollback:
    """Pin ``slot`` of the device to the artifact its last report names as ``previous``.

    Refused with ``no_previous_version`` (409) when the report names none; otherwise every check of a pin
    applies (``invalid_name``, ``artifact_not_found``, ``artifact_disabled``, ``wrong_hardware_class``)."""
    device = get_device(session, device_id)
    entry, why_not = _reported_slot(device.report, slot)
    previous = entry.get("previous")
    active = entry.get("active")
    if not isinstance(previous, str) or not previous:
        raise ConflictError(
            "the device reported no previous version to roll back to",
            code="no_previous_version",
            expected=f"a report naming slots.{slot}.previous",
            got=why_not,
            details={"device_id": device.id, "slot": slot, "active": active},
        )
    pin_artifact(
        session, scope="device", target=device.id, slot=slot, artifact_id=previous, actor=actor, now=now
    )
    from_id = active if isinstance(active, str) else None
    record_alone(
        session,
        actor=actor,
        action="device.rollback",
        target=device.id,
        now=now,
        details={"slot": slot, "artifact_id": previous, "rolled_back_from": from_id},
    )
    return Rollback(device_id=device.id, slot=slot, artifact_id=previous, rolled_back_from=from_id)
