"""Webhooks: create (validated, audited), list, delete, and the delivery log. A webhook's secret is given
back once, when the server made it; it is never shown again."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.server.services.alerts.rules import EVENT_KINDS
from edgefleet.server.services.audit import record
from edgefleet.server.store.alerts import AlertDeliveryRow, AlertEventRow, WebhookRow
from edgefleet.server.store.deletes import delete_loaded_row
from edgefleet.server.store.pages import Page

__all__ = [
    "DELIVERY_STATUSES",
    "MIN_SECRET_CHARS",
    "CreatedWebhook",
    "check_url",
    "check_webhook",
    "create_webhook",
    "delete_webhook",
    "delivery_to_wire",
    "list_deliveries",
    "list_webhooks",
    "queue_test",
    "url_origin",
    "webhook_to_wire",
]

MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 128
MAX_URL_CHARS = 2048
DELIVERY_STATUSES = ("pending", "delivered", "gave_up")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class CreatedWebhook:
    row: WebhookRow
    secret: str | None
    """The secret the server generated (shown once); ``None`` when the caller gave one."""


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, a valid port, no credentials, no whitespace or control
    characters, at most ``MAX_URL_CHARS``."""
    parts = None
    if len(url) <= MAX_URL_CHARS and url.isprintable() and not any(ch.isspace() for ch in url):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError for a port out of 0..65535 or not a number
        except ValueError:  # "http://[::1/": an unclosed IPv6 bracket, a bad port
            parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidDocumentError(
            "a webhook URL must be an absolute http(s) URL",
            code="invalid_webhook_url",
            expected=f"http(s)://host/path, at most {MAX_URL_CHARS} characters",
            got=url[:120],
        )
    if parts.username or parts.password:
        raise InvalidDocumentError(
            "a webhook URL must not carry credentials (the body is signed with the webhook's secret)",
            code="invalid_webhook_url",
            expected="http(s)://host/path",
            got=f"{parts.scheme}://***@{parts.hostname}",
        )
    return url


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of a checked URL: what the audit log (read by viewers) keeps of it. The path
    and query often carry the receiver's own capability token (``/services/T0/B0/XXXX``), and reading the
    webhooks themselves takes an operator."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_KINDS))
    if unknown:
        raise InvalidDocumentError(
            "unknown alert event kinds",
            code="unknown_alert_event",
            expected=list(EVENT_KINDS),
            got=unknown[:10],
        )
    return sorted(set(events))


def check_webhook(*, name: str, url: str, events: list[str], secret: str | None) -> list[str]:
    """Pure: what :func:`create_webhook` refuses before it reads the store (name, URL, event kinds, secret
    length), or the event kinds it would keep. The dashboard asks this before its confirmation page."""
    if not _NAME.fullmatch(name):
        raise InvalidDocumentError(
            "invalid webhook name", code="invalid_name", expected=_NAME.pattern, got=name[:80]
        )
    check_url(url)
    kinds = _check_events(events)
    if secret is not None and not MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS:
        raise InvalidDocumentError(
            "webhook secret length out of bounds",
            code="invalid_webhook_secret",
            expected=f"{MIN_SECRET_CHARS}..{MAX_SECRET_CHARS} characters",
            got=f"{len(secret)} characters",  # never the secret itself
        )
    return kinds


def create_webhook(
    session: Session,
    *,
    name: str,
    url: str,
    events: list[str],
    secret: str | None,
    actor: str,
    now: datetime,
) -> CreatedWebhook:
    kinds = check_webhook(name=name, url=url, events=events, secret=secret)
    generated = secrets.token_urlsafe(32) if secret is None else None
    with session.begin():
        if session.execute(select(WebhookRow.id).where(WebhookRow.name == name)).first() is not None:
            raise ConflictError("a webhook with this name exists", code="webhook_exists", got=name)
        row = WebhookRow(
            id="wh_" + secrets.token_hex(8),
            name=name,
            url=url,
            secret=secret or generated or "",
            events=kinds,
            enabled=True,
            created_by=actor,
            created_at=now,
        )
        session.add(row)
        record(
            session,
            actor=actor,
            action="webhook.create",
            target=row.id,
            now=now,
            details={"name": name, "url": url_origin(url), "events": kinds},
        )
    return CreatedWebhook(row, generated)


def list_webhooks(session: Session) -> list[WebhookRow]:
    with session.begin():
        return list(
            session.execute(select(WebhookRow).order_by(WebhookRow.created_at, WebhookRow.id)).scalars()
        )


def delete_webhook(session: Session, webhook_id: str, *, actor: str, now: datetime) -> None:
    """Removes the webhook and its deliveries (the events stay)."""
    with session.begin():
        row = session.get(WebhookRow, webhook_id[:32])
        if row is None or not delete_loaded_row(session, row):
            raise NotFoundError("no such webhook", code="webhook_not_found", got=webhook_id[:80])
        record(session, actor=actor, action="webhook.delete", target=webhook_id, now=now)


def queue_test(session: Session, webhook_id: str, *, actor: str, now: datetime) -> int:
    """A ``test`` event delivered to this webhook only; returns the delivery id."""
    with session.begin():
        row = session.get(WebhookRow, webhook_id[:32])
        if row is None:
            raise NotFoundError("no such webhook", code="webhook_not_found", got=webhook_id[:80])
        event = AlertEventRow(
            kind="test",
            subject=row.id,
            dedup_key=f"test:{row.id}:{secrets.token_hex(8)}",
            payload={"webhook": row.name, "actor": actor},
            at=now,
        )
        session.add(event)
        session.flush()
        delivery = AlertDeliveryRow(
            event_id=event.id,
            webhook_id=row.id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            updated_at=now,
        )
        session.add(delivery)
        session.flush()
        record(session, actor=actor, action="webhook.test", target=row.id, now=now)
        return delivery.id


def webhook_to_wire(row: WebhookRow) -> dict[str, Any]:
    """Everything but the secret."""
    return {
        "id": row.id,
        "name": row.name,
        "url": row.url,
        "events": list(row.events),
        "enabled": row.enabled,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
    }


def list_deliveries(
    session: Session,
    *,
    limit: int,
    offset: int,
    status: str | None = None,
    webhook_id: str | None = None,
    kind: str | None = None,
) -> Page[tuple[AlertDeliveryRow, AlertEventRow]]:
    """The delivery log, newest first."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidDocumentError(
            "unknown delivery status", code="invalid_query", expected=list(DELIVERY_STATUSES), got=status
        )
    stmt = (
        select(AlertDeliveryRow, AlertEventRow)
        .join(AlertEventRow, AlertEventRow.id == AlertDeliveryRow.event_id)
        .order_by(AlertDeliveryRow.id.desc())
    )
    if status is not None:
        stmt = stmt.where(AlertDeliveryRow.status == status)
    if webhook_id is not None:
        stmt = stmt.where(AlertDeliveryRow.webhook_id == webhook_id)
    if kind is not None:
        stmt = stmt.where(AlertEventRow.kind == kind)
    with session.begin():
        total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
        rows = [(d, e) for d, e in session.execute(stmt.limit(limit).offset(offset))]
        return Page(items=rows, total=int(total), limit=limit, offset=offset)


def delivery_to_wire(delivery: AlertDeliveryRow, event: AlertEventRow) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event": {
            "id": event.id,
            "kind": event.kind,
            "subject": event.subject,
            "at": event.at.isoformat(),
            "data": event.payload,
        },
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.status == "pending" else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "updated_at": delivery.updated_at.isoformat(),
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
    }
