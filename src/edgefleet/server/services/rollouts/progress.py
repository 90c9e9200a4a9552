"""What the engine reads of a rollout's members each tick, and how far each member is.

A rollout may cover 100,000 devices and every replica's engine evaluates it every tick, so the members are
read with one joined select of the columns progress needs (member stage and class; the device's last
contact and labels; the rollout slot's ``active``, ``failed_artifact``, ``state`` and ``behind`` and the
report's ``timezone``, extracted from the report JSON by the database), never as ORM objects with whole
reports. Update windows are judged once per (class, labels, zone), not once per device: 50 sites in one
zone are 50 judgements for 100,000 devices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, Text, cast, select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import device_window
from edgefleet.protocol.update_window import parse_update_window, window_open
from edgefleet.server.services.devices import DeviceStatus, StatusThresholds, device_status
from edgefleet.server.services.rollouts.policy import DeviceProgress
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.registry import HardwareClassRow
from edgefleet.server.store.rollouts import RolloutDeviceRow

__all__ = ["WINDOW_STATE", "MemberFacts", "Windows", "device_progress", "live_members", "member_facts"]

WINDOW_STATE = "pending:window"
"""What an agent reports (slot ``state`` and ``behind``) while a staged version waits for its window."""


class MemberFacts(NamedTuple):
    """One member of a rollout whose device is enrolled and not revoked, as the engine reads it."""

    device_id: str
    stage: int
    hardware_class: str
    last_seen_at: datetime | None
    labels: str | None
    """the labels' JSON text: the key of the window judgement (decoded only when a new one is met)"""
    active: str | None
    failed_artifact: str | None
    state: str | None
    behind: str | None
    timezone: str | None


def member_facts(session: Session, rollout_id: str, slot: str) -> list[MemberFacts]:
    """Every member of the rollout whose device exists and is not revoked, with the facts of ``slot`` from
    the device's newest report (``None`` where the report says nothing)."""

    def reported(key: str) -> Any:
        return DeviceRow.report[("slots", slot, key)].as_string()

    rows = session.execute(
        live_members(
            rollout_id,
            RolloutDeviceRow.device_id,
            RolloutDeviceRow.stage,
            RolloutDeviceRow.hardware_class,
            DeviceRow.last_seen_at,
            cast(DeviceRow.labels, Text),
            reported("active"),
            reported("failed_artifact"),
            reported("state"),
            reported("behind"),
            DeviceRow.report["timezone"].as_string(),
        )
    )
    return [MemberFacts(*r) for r in rows]


def live_members(rollout_id: str, *columns: Any) -> Select[Any]:
    """``columns`` of the rollout's members whose device exists and is not revoked: the members the engine
    counts (``member_facts``) and whose telemetry its gates judge."""
    return (
        select(*columns)
        .select_from(RolloutDeviceRow)
        .join(DeviceRow, DeviceRow.id == RolloutDeviceRow.device_id)
        .where(RolloutDeviceRow.rollout_id == rollout_id, DeviceRow.revoked_at.is_(None))
    )


@dataclass
class Windows:
    """Whether a device's update window is closed at ``now``, judged once per (class, labels, zone): the
    class's window or a matching override (``protocol.hardware_class.device_window``), in the zone the
    device reported (UTC until it reports one), by the agent's own rule (``protocol.update_window``)."""

    class_rows: Mapping[str, HardwareClassRow | None]
    now: datetime
    _closed: dict[tuple[str, str | None, str | None], bool] = field(default_factory=dict)

    def closed(self, facts: MemberFacts) -> bool:
        key = (facts.hardware_class, facts.labels, facts.timezone)
        known = self._closed.get(key)
        if known is None:
            known = self._closed[key] = self._judge(*key)
        return known

    def _judge(self, hardware_class: str, labels_json: str | None, zone: str | None) -> bool:
        row = self.class_rows.get(hardware_class)
        if row is None:
            return False
        labels = json.loads(labels_json) if labels_json else {}
        try:
            window = parse_update_window(device_window(row.document, labels or {}))
        except InvalidDocumentError:
            return False
        return not window_open(window, zone, self.now)


def device_progress(
    facts: MemberFacts,
    *,
    target: str,
    now: datetime,
    thresholds: StatusThresholds,
    window_closed: bool = False,
) -> DeviceProgress:
    """done: the device reports the target active; failed: it reports the target's install failed.
    A pending device waits for its window (``waiting_window``) when it says so (``pending:window``) or when
    ``window_closed`` (its window, in the zone it reported, is closed now: it could not switch anyway)."""
    online = (
        device_status(last_seen_at=facts.last_seen_at, revoked=False, now=now, thresholds=thresholds)
        is DeviceStatus.online
    )
    if facts.active == target:
        status = "done"
    elif facts.failed_artifact == target:
        status = "failed"
    else:
        status = "pending"
    says_window = WINDOW_STATE in (facts.state, facts.behind)
    return DeviceProgress(
        facts.device_id,
        facts.stage,
        status,  # type: ignore[arg-type]
        online,
        facts.hardware_class,
        waiting_window=status == "pending" and (says_window or window_closed),
    )
