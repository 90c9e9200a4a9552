"""The periodic scan: devices silent beyond the threshold and rollouts stalled in one stage become alert
events (once each: the dedup key names the silence or the stage). ``rules`` decides; this reads and
writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from edgefleet.server.services.alerts.outbox import emit
from edgefleet.server.services.alerts.rules import rollout_stalled, silent_devices
from edgefleet.server.store.alerts import AlertEventRow
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.rollouts import RolloutRow

__all__ = ["ScanPolicy", "scan_alerts"]

LOOKBACK = timedelta(days=1)
"""A silence that began longer ago than threshold + this is not looked at again (it alerted, or it began
before alerts were configured): each scan reads a bounded slice of the fleet."""
MAX_DEVICES_PER_SCAN = 1000


@dataclass(frozen=True)
class ScanPolicy:
    device_silent_s: float = 900.0
    rollout_stall_s: float = 6 * 3600.0


def scan_alerts(session: Session, *, now: datetime, policy: ScanPolicy) -> int:
    """Record the events due now; returns how many were new."""
    cutoff = now - timedelta(seconds=policy.device_silent_s)
    new = 0
    with session.begin():
        rows = session.execute(
            select(DeviceRow.id, DeviceRow.last_seen_at, DeviceRow.enrolled_at, DeviceRow.hardware_class)
            .where(
                DeviceRow.revoked_at.is_(None),
                or_(
                    and_(DeviceRow.last_seen_at <= cutoff, DeviceRow.last_seen_at > cutoff - LOOKBACK),
                    and_(
                        DeviceRow.last_seen_at.is_(None),
                        DeviceRow.enrolled_at <= cutoff,
                        DeviceRow.enrolled_at > cutoff - LOOKBACK,
                    ),
                ),
            )
            .order_by(DeviceRow.last_seen_at)
            .limit(MAX_DEVICES_PER_SCAN)
        ).all()
        classes = {r.id: r.hardware_class for r in rows}
        silent = silent_devices(
            ((r.id, r.last_seen_at, r.enrolled_at) for r in rows), now=now, threshold_s=policy.device_silent_s
        )
        keys = {device_id: f"device.offline:{device_id}:{since.isoformat()}" for device_id, since in silent}
        seen = set(
            session.execute(
                select(AlertEventRow.dedup_key).where(AlertEventRow.dedup_key.in_(list(keys.values())))
            ).scalars()
        )
        for device_id, since in silent:
            if keys[device_id] in seen:
                continue
            silent_s = round((now - since).total_seconds())
            event = emit(
                session,
                "device.offline",
                subject=device_id,
                now=now,
                dedup_key=keys[device_id],
                payload={
                    "device_id": device_id,
                    "hardware_class": classes[device_id],
                    "last_seen_at": since.isoformat(),
                    "silent_s": silent_s,
                    "threshold_s": policy.device_silent_s,
                },
            )
            new += event is not None
        for rollout in session.execute(select(RolloutRow).where(RolloutRow.status == "running")).scalars():
            if not rollout_stalled(
                status=rollout.status,
                stage_started_at=rollout.stage_started_at,
                now=now,
                stall_after_s=policy.rollout_stall_s,
            ):
                continue
            pending = (rollout.last_decision or {}).get("pending_count")
            event = emit(
                session,
                "rollout.stalled",
                subject=rollout.id,
                now=now,
                dedup_key=f"rollout.stalled:{rollout.id}:{rollout.stage}:{rollout.stage_started_at.isoformat()}",
                payload={
                    "rollout_id": rollout.id,
                    "model": rollout.model,
                    "stage": rollout.stage,
                    "stage_started_at": rollout.stage_started_at.isoformat(),
                    "stall_after_s": policy.rollout_stall_s,
                    "pending_devices": pending,
                    "reason": (rollout.last_decision or {}).get("reason"),
                },
            )
            new += event is not None
    return new
