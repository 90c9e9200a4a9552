"""Device groups and lifecycle: relabel one device or every device a label selector matches, and
decommission a device (revoked, hidden from fleet views and counts, kept in the audit).

Every change is one transaction with its audit rows: a relabel of 500 devices where one would end up with
invalid labels changes none of them. Labels decide rollout membership (``rollouts.overlay``), so a relabel
moves the director epoch and every affected device's desired state is re-judged at its next poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError
from edgefleet.protocol.selector import Selector
from edgefleet.server.services.audit import record
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.services.enrollment import parse_labels
from edgefleet.server.store.devices import DeviceRow

__all__ = [
    "MAX_RELABEL_DEVICES",
    "LabelChange",
    "Relabelled",
    "active_devices",
    "apply_label_change",
    "decommission_device",
    "matching_devices",
    "relabel",
]

MAX_RELABEL_DEVICES = 10_000
"""Most devices one relabel changes (a bigger selection is refused: split it by class or site)."""


@dataclass(frozen=True)
class LabelChange:
    """Labels to set (added or overwritten) and keys to remove; a key may not be in both."""

    set: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    def check(self) -> None:
        if not self.set and not self.remove:
            raise InvalidDocumentError(
                "a relabel sets or removes at least one label",
                code="invalid_labels",
                expected="set: {key: value} and/or remove: [key]",
                got={},
            )
        parse_labels(dict(self.set))
        both = sorted(set(self.set) & set(self.remove))
        if both:
            raise InvalidDocumentError(
                "a label key is both set and removed", code="invalid_labels", expected="disjoint", got=both
            )


def apply_label_change(labels: Mapping[str, str], change: LabelChange) -> dict[str, str]:
    """Pure: the labels after ``change``; raises ``invalid_labels`` when the result is not valid labels."""
    out = {k: v for k, v in labels.items() if k not in change.remove}
    out.update(change.set)
    return parse_labels(out)


@dataclass(frozen=True)
class Relabelled:
    """What a relabel did (or, with ``dry_run``, would do)."""

    matched: int
    changed: list[dict[str, Any]]
    """``{"id", "before", "after"}`` for each device whose labels change."""
    dry_run: bool

    def to_wire(self) -> dict[str, Any]:
        return {"matched": self.matched, "changed": self.changed, "dry_run": self.dry_run}


def active_devices(hardware_class: str | None = None) -> Select[DeviceRow]:
    """Devices still in the fleet (not decommissioned), oldest enrollment first."""
    stmt = select(DeviceRow).where(DeviceRow.decommissioned_at.is_(None))
    if hardware_class is not None:
        stmt = stmt.where(DeviceRow.hardware_class == hardware_class)
    return stmt.order_by(DeviceRow.enrolled_at, DeviceRow.id)


def matching_devices(
    session: Session, selector: Selector, *, hardware_class: str | None = None
) -> list[DeviceRow]:
    """In the caller's transaction: the fleet's devices the selector matches (decommissioned ones never)."""
    return [
        d for d in session.execute(active_devices(hardware_class)).scalars() if selector.matches(d.labels)
    ]


def relabel(
    session: Session,
    *,
    change: LabelChange,
    actor: str,
    now: datetime,
    device_id: str | None = None,
    selector: Selector | None = None,
    hardware_class: str | None = None,
    dry_run: bool = False,
) -> Relabelled:
    """Change the labels of one device (``device_id``) or of every device ``selector`` matches (optionally
    within ``hardware_class``). A selection that matches no device is refused (``selector_matches_nothing``)
    rather than answered with an empty success; a decommissioned device cannot be relabelled."""
    change.check()
    if (device_id is None) == (selector is None):
        raise InvalidDocumentError(
            "relabel one device or a selection", code="invalid_labels", expected="device_id xor selector"
        )
    with session.begin():
        devices = _select(session, device_id=device_id, selector=selector, hardware_class=hardware_class)
        changed = _changes(devices, change)
        if not dry_run and changed:
            after = {c["id"]: c["after"] for c in changed}
            for device in devices:
                if device.id in after:
                    device.labels = after[device.id]
                    record(
                        session,
                        actor=actor,
                        action="device.relabel",
                        target=device.id,
                        now=now,
                        details={
                            "before": next(c["before"] for c in changed if c["id"] == device.id),
                            "after": after[device.id],
                            "selector": str(selector) if selector is not None else None,
                        },
                    )
            bump_director_epoch(session)
    return Relabelled(matched=len(devices), changed=changed, dry_run=dry_run)


def _select(
    session: Session, *, device_id: str | None, selector: Selector | None, hardware_class: str | None
) -> list[DeviceRow]:
    if device_id is not None:
        device = session.get(DeviceRow, device_id[:32])
        if device is None:
            raise NotFoundError("no such device", code="device_not_found", got=device_id[:80])
        if device.decommissioned_at is not None:
            raise InvalidDocumentError(
                "the device is decommissioned", code="device_decommissioned", got=device.id
            )
        return [device]
    assert selector is not None
    devices = matching_devices(session, selector, hardware_class=hardware_class)
    if not devices:
        raise InvalidDocumentError(
            "the selector matches no device",
            code="selector_matches_nothing",
            expected="at least one device of the fleet",
            got=str(selector),
            details={"hardware_class": hardware_class},
        )
    if len(devices) > MAX_RELABEL_DEVICES:
        raise InvalidDocumentError(
            "the selector matches too many devices for one relabel",
            code="selection_too_large",
            expected=f"<= {MAX_RELABEL_DEVICES} devices",
            got=len(devices),
        )
    return devices


def _changes(devices: Iterable[DeviceRow], change: LabelChange) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for device in devices:
        try:
            after = apply_label_change(device.labels, change)
        except InvalidDocumentError as exc:
            exc.details["device_id"] = device.id
            raise
        if after != device.labels:
            out.append({"id": device.id, "before": dict(device.labels), "after": after})
    return out


def decommission_device(
    session: Session, device_id: str, *, reason: str, actor: str, now: datetime
) -> DeviceRow:
    """Take a device out of the fleet: revoked at once (its signed calls are refused with
    ``device_revoked``; a device keeps serving what it runs), left out of fleet views, counts and rollouts,
    and kept with its audit rows. Decommissioning twice is idempotent (one audit row per call)."""
    with session.begin():
        device = session.get(DeviceRow, device_id[:32])
        if device is None:
            raise NotFoundError("no such device", code="device_not_found", got=device_id[:80])
        if device.revoked_at is None:
            device.revoked_at = now
            device.revoked_reason = ("decommissioned: " + reason)[:2000]
        already = device.decommissioned_at is not None
        if not already:
            device.decommissioned_at = now
        record(
            session,
            actor=actor,
            action="device.decommission",
            target=device.id,
            now=now,
            details={"reason": reason, "already": already, "labels": dict(device.labels)},
        )
        bump_director_epoch(session)
    return device
