"""Pins by label selector: set (or clear) one slot's device pin on every device of an artifact's class that
a selector matches, all or nothing.

A selector pin is a snapshot: it becomes one device pin per matched device, so what each device runs stays
explainable device by device (``device`` pins win over ``class`` pins, as before) and a device enrolled later
is not pinned. Every device must be able to run the artifact (its reported runtimes, ``fit``); one that
cannot refuses the whole selection, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError
from edgefleet.protocol.hardware_class import RuntimeSpec
from edgefleet.protocol.selector import Selector
from edgefleet.server.services.audit import record
from edgefleet.server.services.desired_state import device_runtimes
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.services.fit import check_device_runs
from edgefleet.server.services.lifecycle import matching_devices
from edgefleet.server.store.devices import PinRow
from edgefleet.server.store.in_lists import in_batches
from edgefleet.server.store.registry import ArtifactRow, HardwareClassRow

__all__ = ["SelectionPinned", "pin_selection"]


@dataclass(frozen=True)
class SelectionPinned:
    hardware_class: str
    device_ids: list[str]
    dry_run: bool

    def to_wire(self) -> dict[str, Any]:
        return {
            "hardware_class": self.hardware_class,
            "devices": self.device_ids,
            "matched": len(self.device_ids),
            "dry_run": self.dry_run,
        }


def pin_selection(
    session: Session,
    *,
    selector: Selector,
    slot: str,
    artifact_id: str | None,
    hardware_class: str | None,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> SelectionPinned:
    """Set ``artifact_id`` (or clear, with ``None``) as the ``slot`` device pin of every device that
    ``selector`` matches in the artifact's class (``hardware_class`` names the class when clearing)."""
    with session.begin():
        artifact: ArtifactRow | None = None
        if artifact_id is not None:
            artifact = session.get(ArtifactRow, artifact_id[:20])
            if artifact is None:
                raise NotFoundError("no such artifact", code="artifact_not_found", got=artifact_id[:80])
            if artifact.disabled:
                raise InvalidDocumentError("artifact is disabled", code="artifact_disabled", got=artifact.id)
            if hardware_class is not None and hardware_class != artifact.hardware_class:
                raise InvalidDocumentError(
                    "artifact is built for another hardware class",
                    code="wrong_hardware_class",
                    expected=hardware_class,
                    got=artifact.hardware_class,
                )
            hardware_class = artifact.hardware_class
        if hardware_class is None:
            raise InvalidDocumentError(
                "clearing pins by selector names the hardware class",
                code="invalid_scope",
                expected="hardware_class",
            )
        if artifact is None and session.get(HardwareClassRow, hardware_class[:63]) is None:
            raise NotFoundError("no such hardware class", code="class_not_found", got=hardware_class[:80])
        devices = matching_devices(session, selector, hardware_class=hardware_class)
        if not devices:
            raise InvalidDocumentError(
                "the selector matches no device of this class",
                code="selector_matches_nothing",
                expected="at least one device",
                got=str(selector),
                details={"hardware_class": hardware_class},
            )
        if artifact is not None:
            runtime = RuntimeSpec.model_validate(artifact.manifest.get("runtime") or {})
            for device in devices:
                try:
                    check_device_runs(runtime, device_runtimes(device))
                except InvalidDocumentError as exc:
                    exc.details["device_id"] = device.id
                    raise
        ids = [d.id for d in devices]
        if dry_run:
            return SelectionPinned(hardware_class, ids, dry_run=True)
        existing = {
            p.target: p
            for batch in in_batches(ids)  # a selection may hold 100,000 devices
            for p in session.execute(
                select(PinRow).where(PinRow.scope == "device", PinRow.slot == slot, PinRow.target.in_(batch))
            ).scalars()
        }
        for device_id in ids:
            pin = existing.get(device_id)
            if artifact is None:
                if pin is not None:
                    session.delete(pin)
            elif pin is None:
                session.add(
                    PinRow(
                        scope="device",
                        target=device_id,
                        slot=slot,
                        artifact_id=artifact.id,
                        created_at=now,
                        created_by=actor,
                    )
                )
            else:
                pin.artifact_id, pin.created_at, pin.created_by = artifact.id, now, actor
        bump_director_epoch(session)
        record(
            session,
            actor=actor,
            action="pin.set" if artifact is not None else "pin.clear",
            target=f"selector:{selector}",
            now=now,
            details={
                "slot": slot,
                "artifact_id": artifact.id if artifact is not None else None,
                "hardware_class": hardware_class,
                "devices": ids[:1000],
                "matched": len(ids),
            },
        )
    return SelectionPinned(hardware_class, ids, dry_run=False)
