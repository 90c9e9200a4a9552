"""Device tables: enrollment tokens, devices, request nonces, artifact pins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, PrimaryKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from edgefleet.server.store.base import Base, UTCDateTime

__all__ = ["DeviceNonceRow", "DeviceRow", "DirectorEpochRow", "EnrollmentTokenRow", "PinRow"]


class EnrollmentTokenRow(Base):
    __tablename__ = "enrollment_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    hardware_class: Mapped[str] = mapped_column(
        ForeignKey("hardware_classes.name", ondelete="RESTRICT"), index=True
    )
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    serial: Mapped[str | None] = mapped_column(String(128), nullable=True)
    uses_total: Mapped[int] = mapped_column(Integer)
    uses_left: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(63))


class DeviceRow(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(String(512))
    public_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    hardware_class: Mapped[str] = mapped_column(
        ForeignKey("hardware_classes.name", ondelete="RESTRICT"), index=True
    )
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    serial: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    enrollment_token_id: Mapped[str] = mapped_column(String(32))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, deferred=True)
    report_boot_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """Copied from the newest report: fleet views read these columns, not 10,000 JSON reports."""
    report_active: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    """``slot=artifact_id`` pairs joined by ``;`` (see ``services.device_reports.active_summary``)."""
    report_error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_sequence: Mapped[int] = mapped_column(Integer, default=0)
    desired_generation: Mapped[int] = mapped_column(Integer, default=0)
    desired_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    desired_envelope: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, deferred=True)
    desired_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    desired_epoch: Mapped[int] = mapped_column(Integer, default=0)
    director_mark: Mapped[int] = mapped_column(Integer, default=0, index=True)
    """The director epoch of the newest change that named this device (``services.director_epoch``): its
    stored document is current while ``desired_epoch`` is at least this and the epoch's ``full_value``."""
    decommissioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    """Set once, with ``revoked_at``: the device left the fleet; fleet views and counts leave it out."""
    inventory: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The bounded inventory summary of the newest report (``services.inventory.inventory_summary``)."""


class DirectorEpochRow(Base):
    """One row whose value moves forward whenever anything that shapes desired states changes (pins,
    artifact status). A device whose document was computed at the current epoch needs no recomputation,
    which makes the fleet's steady-state 304 poll cheap."""

    __tablename__ = "director_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
    full_value: Mapped[int] = mapped_column(Integer, default=0)
    """The epoch of the newest change that may alter any device's desired state (one that names its devices
    moves only ``value`` and those devices' ``director_mark``)."""


class DeviceNonceRow(Base):
    """Nonces seen inside the clock-skew window: a second use is a replay."""

    __tablename__ = "device_nonces"
    __table_args__ = (PrimaryKeyConstraint("device_id", "nonce"),)

    device_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PinRow(Base):
    """An operator's choice of artifact for a slot, for a whole class or one device (device wins)."""

    __tablename__ = "pins"
    __table_args__ = (UniqueConstraint("scope", "target", "slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16))  # "class" | "device"
    target: Mapped[str] = mapped_column(String(63), index=True)
    slot: Mapped[str] = mapped_column(String(63))
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(63))
