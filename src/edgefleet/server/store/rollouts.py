"""Rollout tables: the rollout, its members, its timeline, and the one-active-per-(model, class) lock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from edgefleet.server.store.base import Base, UTCDateTime

__all__ = ["RolloutDeviceRow", "RolloutEventRow", "RolloutGateHistoryRow", "RolloutLockRow", "RolloutRow"]


class RolloutRow(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(63), index=True)
    slot: Mapped[str] = mapped_column(String(63))
    targets: Mapped[dict[str, dict[str, str | None]]] = mapped_column(JSON)
    """hardware class -> {"from": artifact id or None, "to": artifact id}"""
    selector: Mapped[dict[str, str] | str] = mapped_column(JSON)
    """A selector expression (``protocol.selector``), or a legacy ``{key: value}`` mapping."""
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[int] = mapped_column(Integer)
    stage_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    promoted_stage: Mapped[int] = mapped_column(Integer)
    halt_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    """Compare-and-set counter: every transition bumps it, so two replicas never apply one twice."""
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, default=None)
    """When an engine last evaluated the rollout (its ``now``): another replica's engine skips it for a tick
    (``services.rollouts.pacing.evaluation_due``)."""


class RolloutDeviceRow(Base):
    __tablename__ = "rollout_devices"
    __table_args__ = (PrimaryKeyConstraint("rollout_id", "device_id"),)

    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(32), index=True)
    hardware_class: Mapped[str] = mapped_column(String(63))
    stage: Mapped[int] = mapped_column(Integer)


class RolloutEventRow(Base):
    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(63))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class RolloutLockRow(Base):
    """Exists while a rollout of ``model`` for ``hardware_class`` is active; its key refuses a second."""

    __tablename__ = "rollout_locks"
    __table_args__ = (PrimaryKeyConstraint("model", "hardware_class"),)

    model: Mapped[str] = mapped_column(String(63))
    hardware_class: Mapped[str] = mapped_column(String(63))
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"), index=True)


class RolloutGateHistoryRow(Base):
    """One sample of a rollout's story: the gate rows of an engine evaluation (``evaluate_gates``, as stored
    in ``last_decision.gates``), the exposed device count, and after a halt or abort how many exposed devices
    are back on the previous artifact. Bounded per rollout (``services.rollouts.history``)."""

    __tablename__ = "rollout_gate_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    stage: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    """the engine's action (wait, advance, complete, halt) or ``rollback`` for a sample after the halt"""
    gates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    exposed: Mapped[int] = mapped_column(Integer)
    rolled_back: Mapped[int | None] = mapped_column(Integer, nullable=True)
    still_on_new: Mapped[int | None] = mapped_column(Integer, nullable=True)
