"""The outbox: an alert event and one pending delivery per subscribed webhook, added to the caller's open
transaction. The event commits (or rolls back) with the change that caused it, so a crash before the
dispatcher sends it loses nothing: the dispatcher finds the pending rows after a restart."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.server.services.alerts.rules import SECURITY_CODES, security_dedup_key
from edgefleet.server.store.alerts import AlertDeliveryRow, AlertEventRow, WebhookRow
from edgefleet.server.store.devices import DeviceRow

log = logging.getLogger("edgefleet.server.alerts")

__all__ = ["emit", "emit_alone", "event_body", "record_security_refusal"]


def emit(
    session: Session,
    kind: str,
    *,
    subject: str,
    now: datetime,
    payload: dict[str, Any] | None = None,
    dedup_key: str | None = None,
) -> AlertEventRow | None:
    """Record one event and queue its deliveries (in the caller's transaction). ``dedup_key``: an event
    with the same key already recorded makes this a no-op (returns ``None``)."""
    key = (dedup_key or f"{kind}:{subject}:{now.isoformat()}")[:255]
    if session.execute(select(AlertEventRow.id).where(AlertEventRow.dedup_key == key)).first() is not None:
        return None
    event = AlertEventRow(kind=kind, subject=subject[:255], dedup_key=key, payload=payload or {}, at=now)
    try:
        with session.begin_nested():  # a racing replica may record the same key: only one wins
            session.add(event)
            session.flush()
    except IntegrityError:
        return None
    hooks = session.execute(select(WebhookRow).where(WebhookRow.enabled.is_(True))).scalars()
    for hook in hooks:
        if hook.events and kind not in hook.events:
            continue
        session.add(
            AlertDeliveryRow(
                event_id=event.id,
                webhook_id=hook.id,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
            )
        )
    return event


def emit_alone(session: Session, kind: str, *, subject: str, now: datetime, **kwargs: Any) -> None:
    """``emit`` in a transaction of its own (for events whose cause rolls back, e.g. a refused call)."""
    with session.begin():
        emit(session, kind, subject=subject, now=now, **kwargs)


def event_body(event: AlertEventRow) -> dict[str, Any]:
    """What a webhook receives (as canonical JSON)."""
    return {
        "id": event.id,
        "kind": event.kind,
        "subject": event.subject,
        "at": event.at.isoformat(),
        "data": event.payload,
    }


def record_security_refusal(session: Session, code: str, *, device_id: str, path: str, now: datetime) -> None:
    """A refused call of a known device is a ``security`` event (``source: "server"``; a device's own
    security events arrive with its telemetry, ``source: "device"``) when ``code`` is one of
    ``SECURITY_CODES`` (a bad signature, a replay, a revoked device calling, a probe result for a candidate
    never sent); at
    most one per device and code per window (``security_dedup_key``). Its own transaction: the refused
    call's rolled back. Never raises (the refusal is what the caller answers)."""
    if code not in SECURITY_CODES:
        return
    if session.in_transaction():
        session.rollback()
    try:
        with session.begin():
            device = session.get(DeviceRow, device_id[:32])
            if device is None:
                return
            emit(
                session,
                "security",
                subject=device.id,
                now=now,
                dedup_key=security_dedup_key(code, device.id, now),
                payload={
                    "source": "server",
                    "code": code,
                    "device_id": device.id,
                    "hardware_class": device.hardware_class,
                    "path": path[:200],
                },
            )
    except Exception:  # an alert must never turn a 401 into a 500
        log.exception("event=security_alert_failed code=%s", code)
