"""Security events: a small sink interface, so rejections reach telemetry (kept under queue pressure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from edgefleet.protocol.errors import EdgefleetError

__all__ = ["ListSink", "NullSink", "SecurityEvent", "SecurityEventSink", "event_from_error"]


@dataclass(frozen=True)
class SecurityEvent:
    code: str
    message: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)


class SecurityEventSink(Protocol):
    def record(self, event: SecurityEvent) -> None: ...


class NullSink:
    """Drops events (tools that have no telemetry, e.g. the conformance client)."""

    def record(self, event: SecurityEvent) -> None:
        return None


class ListSink:
    """Keeps events in memory; the agent's telemetry queue adapter or tests read ``events``."""

    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []

    def record(self, event: SecurityEvent) -> None:
        self.events.append(event)

    @property
    def codes(self) -> list[str]:
        return [e.code for e in self.events]


def event_from_error(error: EdgefleetError, *, at: datetime | None = None) -> SecurityEvent:
    return SecurityEvent(
        code=error.code,
        message=error.message,
        at=at or datetime.now(timezone.utc),
        details=dict(error.details),
    )
