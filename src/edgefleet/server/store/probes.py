"""Probe tables: the probe job (what to measure, on which class, until when) and one row per device asked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from edgefleet.server.store.base import Base, UTCDateTime

__all__ = ["ProbeDeviceRow", "ProbeRow"]


class ProbeRow(Base):
    __tablename__ = "probes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[str] = mapped_column(String(63))
    hardware_class: Mapped[str] = mapped_column(String(63), index=True)
    bundle: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The director's assignment of the signed bundle (target path, hashes, manifest)."""
    candidates: Mapped[list[str]] = mapped_column(JSON)
    selector: Mapped[dict[str, Any]] = mapped_column(JSON)
    devices_asked: Mapped[int] = mapped_column(Integer)
    runs: Mapped[int] = mapped_column(Integer)
    sustained_s: Mapped[float] = mapped_column(Float)
    time_limit_s: Mapped[float] = mapped_column(Float)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProbeDeviceRow(Base):
    __tablename__ = "probe_devices"
    __table_args__ = (PrimaryKeyConstraint("probe_id", "device_id"),)

    probe_id: Mapped[str] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(32), index=True)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
