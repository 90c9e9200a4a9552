"""Alert tables: webhooks, the events they are told about, and the delivery outbox (one row per event and
webhook, written in the event's own transaction, so no event is lost if the process dies before sending)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgefleet.server.store.base import Base, UTCDateTime

__all__ = ["AlertDeliveryRow", "AlertEventRow", "WebhookRow"]


class WebhookRow(Base):
    __tablename__ = "alert_webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))
    """The HMAC key. Never leaves the server after creation."""
    events: Mapped[list[str]] = mapped_column(JSON)
    """The event kinds this webhook receives; empty: every kind."""
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertEventRow(Base):
    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    """One event per key: a stale device alerts once per silence, a stalled rollout once per stage."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class AlertDeliveryRow(Base):
    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("alert_events.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("alert_webhooks.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    """``pending`` (due at ``next_attempt_at``), ``delivered`` or ``gave_up``."""
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """A dispatcher holds the row until then (two replicas never send one delivery at once)."""
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
