"""The dispatcher: sends due deliveries from the outbox, outside any request, and records each outcome.

A round claims due rows with a lease (compare-and-set, so two replicas never send one delivery at once),
sends each signed body through a ``WebhookSender``, and applies ``rules.after_attempt``: delivered, due
again after a capped, jittered backoff, or given up after ``RetryPolicy.max_attempts``. A process that dies
mid-round leaves its rows leased; the lease runs out and another round sends them (at least once:
receivers dedupe on ``X-Edgefleet-Delivery``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import httpx
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.webhooks import SIGNATURE_HEADER, signature_header
from edgefleet.server.services.alerts.outbox import event_body
from edgefleet.server.services.alerts.rules import RetryPolicy, after_attempt
from edgefleet.server.store.alerts import AlertDeliveryRow, AlertEventRow, WebhookRow

__all__ = ["DispatchResult", "HttpxSender", "WebhookSender", "dispatch_due"]

log = logging.getLogger("edgefleet.server.alerts")

MAX_ERROR_CHARS = 255


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body``; the HTTP status. Raises ``httpx.HTTPError`` when no answer came."""


class HttpxSender:
    """The real sender: one short POST, no redirects followed (a 3xx is a failure to deliver)."""

    def __init__(self, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, transport=transport
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        return self._client.post(url, content=body, headers=headers).status_code

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    attempts: int
    lease_until: datetime
    url: str
    secret: str
    body: bytes
    kind: str


@dataclass(frozen=True)
class DispatchResult:
    delivered: int = 0
    retried: int = 0
    gave_up: int = 0


def _claim(session: Session, *, now: datetime, lease_s: float, batch: int) -> list[_Claimed]:
    lease_until = now + timedelta(seconds=lease_s)
    claimed: list[_Claimed] = []
    with session.begin():
        due = session.execute(
            select(AlertDeliveryRow.id)
            .where(
                AlertDeliveryRow.status == "pending",
                AlertDeliveryRow.next_attempt_at <= now,
                or_(AlertDeliveryRow.lease_until.is_(None), AlertDeliveryRow.lease_until < now),
            )
            .order_by(AlertDeliveryRow.next_attempt_at, AlertDeliveryRow.id)
            .limit(batch)
        ).scalars()
        for delivery_id in list(due):
            result = cast(
                "CursorResult[Any]",
                session.execute(
                    update(AlertDeliveryRow)
                    .where(
                        AlertDeliveryRow.id == delivery_id,
                        AlertDeliveryRow.status == "pending",
                        or_(AlertDeliveryRow.lease_until.is_(None), AlertDeliveryRow.lease_until < now),
                    )
                    .values(lease_until=lease_until)
                    .execution_options(synchronize_session=False)
                ),
            )
            if result.rowcount != 1:
                continue  # another replica took it
            delivery, event, hook = session.execute(
                select(AlertDeliveryRow, AlertEventRow, WebhookRow)
                .join(AlertEventRow, AlertEventRow.id == AlertDeliveryRow.event_id)
                .join(WebhookRow, WebhookRow.id == AlertDeliveryRow.webhook_id)
                .where(AlertDeliveryRow.id == delivery_id)
            ).one()
            claimed.append(
                _Claimed(
                    delivery_id=delivery.id,
                    attempts=delivery.attempts,
                    lease_until=lease_until,
                    url=hook.url,
                    secret=hook.secret,
                    body=canonical_json(event_body(event)),
                    kind=event.kind,
                )
            )
    return claimed


def _send(sender: WebhookSender, c: _Claimed, now: datetime) -> tuple[bool, int | None, str | None]:
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: signature_header(c.secret, int(now.timestamp()), c.body),
        "X-Edgefleet-Event": c.kind,
        "X-Edgefleet-Delivery": str(c.delivery_id),
        "user-agent": "edgefleet-webhooks/1",
    }
    try:
        status = sender.post(c.url, c.body, headers)
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    if 200 <= status < 300:
        return True, status, None
    return False, status, f"HTTP {status}"


def dispatch_due(
    session: Session,
    *,
    now: datetime,
    sender: WebhookSender,
    policy: RetryPolicy,
    rng: random.Random | None = None,
    batch: int = 50,
    lease_s: float = 60.0,
    clock: Callable[[], datetime] | None = None,
) -> DispatchResult:
    """One round: send every due delivery (at most ``batch``) and record what happened to each."""
    rng = rng or random.Random()  # noqa: S311  # jitter, not secrets
    counts = {"delivered": 0, "pending": 0, "gave_up": 0}
    for c in _claim(session, now=now, lease_s=lease_s, batch=batch):
        sent_at = clock() if clock is not None else now
        ok, status_code, error = _send(sender, c, sent_at)
        outcome = after_attempt(
            ok=ok, attempts_before=c.attempts, now=sent_at, policy=policy, jitter=rng.random()
        )
        with session.begin():
            session.execute(
                update(AlertDeliveryRow)
                .where(AlertDeliveryRow.id == c.delivery_id, AlertDeliveryRow.lease_until == c.lease_until)
                .values(
                    status=outcome.status,
                    attempts=outcome.attempts,
                    next_attempt_at=outcome.next_attempt_at or sent_at,
                    lease_until=None,
                    last_status_code=status_code,
                    last_error=error,
                    updated_at=sent_at,
                    delivered_at=sent_at if ok else None,
                )
                .execution_options(synchronize_session=False)
            )
        counts[outcome.status] += 1
        level = logging.INFO if ok else logging.WARNING
        log.log(
            level,
            "event=webhook_%s delivery=%d attempts=%d status=%s error=%s",
            outcome.status,
            c.delivery_id,
            outcome.attempts,
            status_code,
            error,
        )
    return DispatchResult(counts["delivered"], counts["pending"], counts["gave_up"])
