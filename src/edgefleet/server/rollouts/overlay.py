"""How active rollouts change one device's desired state: between its class pin and its device pins."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server.rollouts.policy import ACTIVE_STATUSES, serves_target
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.rollouts import RolloutDeviceRow, RolloutLockRow, RolloutRow

__all__ = ["rollout_overlay", "selector_matches"]


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def rollout_overlay(session: Session, device: DeviceRow) -> dict[str, str]:
    """Slot -> artifact id for every active rollout that covers this device and now serves it the new one.

    Halted and aborted rollouts overlay nothing: the device falls back to its pins (the previous artifact),
    which is the rollback. Completed rollouts have already moved the pins.
    """
    rows = session.execute(
        select(RolloutRow)
        .join(RolloutLockRow, RolloutLockRow.rollout_id == RolloutRow.id)
        .where(RolloutLockRow.hardware_class == device.hardware_class, RolloutRow.status.in_(ACTIVE_STATUSES))
    ).scalars()
    out: dict[str, str] = {}
    for rollout in rows:
        if not selector_matches(rollout.selector, device.labels):
            continue
        member = session.get(RolloutDeviceRow, (rollout.id, device.id))
        if serves_target(
            status=rollout.status,  # type: ignore[arg-type]
            member_stage=member.stage if member is not None else None,
            current_stage=rollout.stage,
            enrolling_devices=str(rollout.spec.get("enrolling_devices", "old")),
        ):
            target = rollout.targets.get(device.hardware_class, {}).get("to")
            if target:
                out[rollout.slot] = target
    return out
