"""Which devices a rollout's transition can give another desired state: the scope of its epoch change.

A transition (created, advanced, halted, aborted, completed) changes what the overlay serves only to the
members whose stage it exposes, hides or moves between shadow and serving, and to non-members only when
they are served by the rollout itself (``enrolling_devices = "new"``) or by the class pin it moves on
completion. :func:`member_stages_changed` and :func:`non_members_changed` decide that from the spec and the
two positions (pure, by the overlay's own rules in ``policy``); :func:`transition_scope` turns the decision
into statements for ``director_epoch.bump_director_epoch(devices=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select

from edgefleet.server.services.rollouts.policy import (
    RolloutStatus,
    serves_target,
    shadows_target,
)
from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.rollouts import RolloutDeviceRow, RolloutRow

__all__ = ["Position", "member_stages_changed", "non_members_changed", "transition_scope"]


@dataclass(frozen=True)
class Position:
    status: RolloutStatus
    stage: int


_Served = tuple[bool, bool, bool]
"""What one device gets from the rollout: the target serving, the target in shadow, the slot urgent."""


def _member(spec: RolloutSpec, at: Position | None, member_stage: int | None) -> _Served:
    if at is None or at.status in ("halted", "aborted"):
        return (False, False, False)  # its pins: nothing yet, or the rollback
    if at.status == "completed":
        return (True, False, False)  # the moved pin serves the target, windows apply again
    shadow = bool(spec.stages[at.stage].shadow) if at.stage < len(spec.stages) else False
    serves = serves_target(
        status=at.status,
        member_stage=member_stage,
        current_stage=at.stage,
        enrolling_devices=spec.enrolling_devices,
        shadow_stage=shadow,
    )
    shadows = shadows_target(
        status=at.status, member_stage=member_stage, current_stage=at.stage, shadow_stage=shadow
    )
    return (serves, shadows, spec.ignore_windows and (serves or shadows))


def member_stages_changed(spec: RolloutSpec, before: Position | None, after: Position) -> frozenset[int]:
    """Pure: the member stages whose devices the transition from ``before`` (None: the rollout did not
    exist) to ``after`` gives another desired state."""
    return frozenset(
        stage
        for stage in range(len(spec.stages))
        if _member(spec, before, stage) != _member(spec, after, stage)
    )


def non_members_changed(
    spec: RolloutSpec, before: Position | None, after: Position, *, selector: bool
) -> bool:
    """Pure: whether devices of the targeted classes that are not members may get another desired state
    (served by the rollout with ``enrolling_devices = "new"``, or by the class pin moved on completion
    of a rollout without a selector)."""

    def served(at: Position | None) -> _Served:
        if at is not None and at.status == "completed":
            return (False, False, False) if selector else (True, False, False)
        return _member(spec, at, None)  # as a member not in any stage

    return served(before) != served(after)


def transition_scope(
    row: RolloutRow, spec: RolloutSpec, before: Position | None, after: Position
) -> list[Select[Any]]:
    """The devices the transition can touch, as statements selecting their ids (none: it touches none)."""
    members = select(RolloutDeviceRow.device_id).where(RolloutDeviceRow.rollout_id == row.id)
    scope: list[Select[Any]] = []
    stages = member_stages_changed(spec, before, after)
    if stages:
        scope.append(members.where(RolloutDeviceRow.stage.in_(sorted(stages))))
    if non_members_changed(spec, before, after, selector=bool(row.selector)):
        scope.append(
            select(DeviceRow.id).where(
                DeviceRow.hardware_class.in_(sorted(row.targets)), DeviceRow.id.not_in(members)
            )
        )
    if after.status == "completed" and row.selector:  # each member's device pin is written, any earlier
        scope.append(members)  # one (which overrode the rollout) replaced
    return scope
