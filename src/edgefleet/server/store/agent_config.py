"""Remote agent configuration layers: one row per (scope, target)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from edgefleet.server.store.base import Base, UTCDateTime

__all__ = ["AgentConfigRow"]


class AgentConfigRow(Base):
    """``scope``: ``class`` (target: a class name), ``selector`` (target: the selector's canonical text,
    ``protocol.selector``; ``selector`` keeps its ``key=value`` requirements) or ``device`` (target: a device
    id). ``settings``: setting -> value, checked on write."""

    __tablename__ = "agent_configs"
    __table_args__ = (PrimaryKeyConstraint("scope", "target"),)

    scope: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(255))
    selector: Mapped[dict[str, str]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(63))
