"""How active rollouts change one device's desired state: between its class pin and its device pins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.selector import Selector, parse_selector, selector_from_stored
from edgefleet.server.services.rollouts.policy import ACTIVE_STATUSES, serves_target, shadows_target
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.rollouts import RolloutDeviceRow, RolloutLockRow, RolloutRow

__all__ = [
    "SHADOW_SUFFIX",
    "RolloutFacts",
    "active_rollouts",
    "canonical_selector",
    "rollout_overlay",
    "selector_matches",
    "shadow_slot",
]

SHADOW_SUFFIX = ".shadow"


def shadow_slot(slot: str) -> str:
    """The slot a device installs a shadow candidate into, beside ``slot`` (which keeps serving)."""
    return slot + SHADOW_SUFFIX


@lru_cache(maxsize=256)
def _parsed(text: str) -> Selector:
    return parse_selector(text)


def canonical_selector(selector: Mapping[str, str] | str) -> dict[str, str] | str:
    """What a rollout stores: an expression parsed and written canonically (refused with
    ``empty_selector``, ``invalid_selector`` or ``selector_conflict``), or a legacy mapping as given."""
    if isinstance(selector, str):
        return str(parse_selector(selector))
    return dict(selector)


def selector_matches(selector: Mapping[str, str] | str, labels: Mapping[str, str]) -> bool:
    """A rollout's stored selector: a selector expression (``protocol.selector``), or a legacy
    ``{key: value}`` mapping (``{}``: every device of the targeted classes)."""
    if isinstance(selector, str):
        return _parsed(selector).matches(labels)
    return selector_from_stored(selector).matches(labels)


@dataclass(frozen=True)
class RolloutFacts:
    """What the overlay reads of an active rollout (a plain copy: shared between requests, read only)."""

    id: str
    slot: str
    selector: dict[str, str] | str
    spec: dict[str, Any]
    status: str
    stage: int
    targets: dict[str, dict[str, str | None]]


def active_rollouts(session: Session, hardware_class: str) -> list[RolloutFacts]:
    """The active rollouts of a class, oldest first (by ``created_at``, then id)."""
    rows = session.execute(
        select(RolloutRow)
        .join(RolloutLockRow, RolloutLockRow.rollout_id == RolloutRow.id)
        .where(RolloutLockRow.hardware_class == hardware_class, RolloutRow.status.in_(ACTIVE_STATUSES))
        .order_by(RolloutRow.created_at, RolloutRow.id)
    ).scalars()
    return [RolloutFacts(r.id, r.slot, r.selector, r.spec, r.status, r.stage, r.targets) for r in rows]


def rollout_overlay(
    session: Session,
    device: DeviceRow,
    urgent: set[str] | None = None,
    rollouts: Iterable[RolloutFacts] | None = None,
) -> dict[str, str]:
    """Slot -> artifact id for every active rollout that covers this device and now serves it the new one.

    Halted and aborted rollouts overlay nothing: the device falls back to its pins (the previous artifact),
    which is the rollback. Completed rollouts have already moved the pins. While the current stage is a shadow
    stage, exposed members get the new artifact in ``<slot>.shadow`` and keep their pinned one in ``<slot>``.

    Creating a rollout refuses a slot of a class that another active rollout moves
    (``rollout_slot_conflict``); should two ever be active anyway, the oldest one (by ``created_at``, then
    id) decides the slot.

    ``urgent``, when given, receives the slots (of the answer) that a rollout created with
    ``ignore_windows`` moves: they switch whatever the device's update window. ``rollouts``: the class's
    active rollouts (``active_rollouts``) when the caller already read them (``services.director_view``).
    """
    rows = active_rollouts(session, device.hardware_class) if rollouts is None else rollouts
    out: dict[str, str] = {}
    claimed: set[str] = set()  # slots an older rollout covering this device already decides
    for rollout in rows:
        if not selector_matches(rollout.selector, device.labels) or rollout.slot in claimed:
            continue
        member_stage = session.execute(
            select(RolloutDeviceRow.stage).where(
                RolloutDeviceRow.rollout_id == rollout.id, RolloutDeviceRow.device_id == device.id
            )
        ).scalar_one_or_none()
        stages = rollout.spec.get("stages") or []
        in_shadow = bool(stages[rollout.stage].get("shadow")) if rollout.stage < len(stages) else False
        target = rollout.targets.get(device.hardware_class, {}).get("to")
        if not target:
            continue
        claimed.add(rollout.slot)
        if serves_target(
            status=rollout.status,  # type: ignore[arg-type]
            member_stage=member_stage,
            current_stage=rollout.stage,
            enrolling_devices=str(rollout.spec.get("enrolling_devices", "old")),
            shadow_stage=in_shadow,
        ):
            out[rollout.slot] = target
            if urgent is not None and rollout.spec.get("ignore_windows"):
                urgent.add(rollout.slot)
        elif shadows_target(
            status=rollout.status,  # type: ignore[arg-type]
            member_stage=member_stage,
            current_stage=rollout.stage,
            shadow_stage=in_shadow,
        ):
            out[shadow_slot(rollout.slot)] = target
            if urgent is not None and rollout.spec.get("ignore_windows"):
                urgent.add(shadow_slot(rollout.slot))
    return out
