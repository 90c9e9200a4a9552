"""Telemetry tables: device windows, their per-model-version rows, events, and per-device queue state.

``(device_id, boot_id, sequence)`` is unique in windows and in events: the database itself refuses to
count a record twice, whatever the API layer does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import text

from edgefleet.server.store.base import Base, UTCDateTime

__all__ = [
    "TelemetryDeviceRow",
    "TelemetryEventRow",
    "TelemetryHourRollupRow",
    "TelemetryModelWindowRow",
    "TelemetryReporterRow",
    "TelemetryRollupRow",
    "TelemetryWindowRow",
]


class TelemetryWindowRow(Base):
    """One device window. ``start_at``/``end_at`` are on the server's clock (device time corrected by the
    offset seen at upload); ``device_end_at`` is what the device said."""

    __tablename__ = "telemetry_windows"
    __table_args__ = (UniqueConstraint("device_id", "boot_id", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(32), index=True)
    hardware_class: Mapped[str] = mapped_column(String(63), index=True)
    boot_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    device_end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    late_s: Mapped[float] = mapped_column(Float)
    degraded_s: Mapped[dict[str, float]] = mapped_column(JSON)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class TelemetryModelWindowRow(Base):
    """One model version's numbers inside one window: what fleet health sums (histograms merge exactly)."""

    __tablename__ = "telemetry_model_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("telemetry_windows.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[str] = mapped_column(String(32), index=True)
    hardware_class: Mapped[str] = mapped_column(String(63), index=True)
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(128), default="")
    """the device's ``site`` label when the window arrived (``""``: none)"""
    end_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    errors_by_code: Mapped[dict[str, int]] = mapped_column(JSON)
    requests_by_rung: Mapped[dict[str, int]] = mapped_column(JSON)
    latency_buckets: Mapped[dict[str, int]] = mapped_column(JSON)
    latency_sum_ms: Mapped[float] = mapped_column(Float)
    latency_max_ms: Mapped[float] = mapped_column(Float)
    shadow_compared: Mapped[int] = mapped_column(BigInteger)
    shadow_agreement_sum: Mapped[float] = mapped_column(Float)
    shadow_stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    """the rest of ``ShadowStats`` as JSON (counts, sums, maxima, both latency histograms; merged by
    ``services.telemetry.merge_shadow_stats``); ``{}`` for windows of agents that did not send them"""
    health_passed: Mapped[int] = mapped_column(BigInteger)
    health_failed: Mapped[int] = mapped_column(BigInteger)
    health_failed_by_code: Mapped[dict[str, int]] = mapped_column(JSON)
    input_faults: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    """requests refused for their input (a failing sensor) before the model ran: not in ``errors``"""
    input_faults_by_code: Mapped[dict[str, int]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )


class TelemetryEventRow(Base):
    __tablename__ = "telemetry_events"
    __table_args__ = (UniqueConstraint("device_id", "boot_id", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(32), index=True)
    boot_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    code: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class TelemetryDeviceRow(Base):
    """What the device last said about its queue: cumulative drop counters (monotonic, max-merged)."""

    __tablename__ = "telemetry_devices"

    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dropped: Mapped[dict[str, int]] = mapped_column(JSON)
    queue_bytes: Mapped[int] = mapped_column(BigInteger)
    queue_records: Mapped[int] = mapped_column(BigInteger)
    last_batch_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_window_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    records_accepted: Mapped[int] = mapped_column(BigInteger)
    records_duplicate: Mapped[int] = mapped_column(BigInteger)
    slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    """per model slot, the newest ``SlotStatus`` (times on the server's clock): ``services.field_health``"""
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """the newest window's resource pressure (temperature, memory, disk)"""
    last_request_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """the newest over the slots (server clock): fleet health's prefilter for requests without success"""


class _RollupSums:
    """The summed columns of a rollup (minute or hour): counts add and histogram buckets add."""

    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    errors_by_code: Mapped[dict[str, int]] = mapped_column(JSON)
    requests_by_rung: Mapped[dict[str, int]] = mapped_column(JSON)
    latency_buckets: Mapped[dict[str, int]] = mapped_column(JSON)
    latency_sum_ms: Mapped[float] = mapped_column(Float)
    latency_max_ms: Mapped[float] = mapped_column(Float)
    shadow_compared: Mapped[int] = mapped_column(BigInteger)
    shadow_agreement_sum: Mapped[float] = mapped_column(Float)
    shadow_stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    """the rest of ``ShadowStats`` as JSON (counts, sums, maxima, both latency histograms; merged by
    ``services.telemetry.merge_shadow_stats``); ``{}`` for windows of agents that did not send them"""
    health_passed: Mapped[int] = mapped_column(BigInteger)
    health_failed: Mapped[int] = mapped_column(BigInteger)
    health_failed_by_code: Mapped[dict[str, int]] = mapped_column(JSON)
    input_faults: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    """requests refused for their input (a failing sensor) before the model ran: not in ``errors``"""
    input_faults_by_code: Mapped[dict[str, int]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    degraded_s: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    """window-level figures, on the row whose ``model_version`` is ``""``: seconds per degraded rung ..."""
    max_late_s: Mapped[float] = mapped_column(Float, default=0.0)
    """... and the latest-arriving window's lateness"""


class TelemetryRollupRow(_RollupSums, Base):
    """Model windows summed per minute (of the window's end), class, version and site, at ingest: fleet health
    over an hour reads tens of these instead of one row per device and window. Exact (counts and histogram
    buckets add); the time resolution is the minute."""

    __tablename__ = "telemetry_rollups"
    __table_args__ = (PrimaryKeyConstraint("minute_at", "hardware_class", "model_version", "site"),)

    minute_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hardware_class: Mapped[str] = mapped_column(String(63))
    model_version: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(128))
    """the device's ``site`` label, ``""`` when it has none"""


class TelemetryHourRollupRow(_RollupSums, Base):
    """The same sums per hour (of the window's end), written at ingest beside the minute rows: a week of
    history reads 168 rows per (class, version, site) instead of 10,080 (``services.health_history``)."""

    __tablename__ = "telemetry_hour_rollups"
    __table_args__ = (PrimaryKeyConstraint("hour_at", "hardware_class", "model_version", "site"),)

    hour_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hardware_class: Mapped[str] = mapped_column(String(63))
    model_version: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(128))
    """the device's ``site`` label, ``""`` when it has none"""


class TelemetryReporterRow(Base):
    """When each (device, model version, class, site) last reported: the newest ``end_at`` of its model
    windows, kept at ingest beside the rollups. Fleet health's device counts ("who reported since T") read
    at most devices x versions of these instead of a DISTINCT over every model window of the period; pruned
    with the windows (``last_end_at`` older than the retention)."""

    __tablename__ = "telemetry_reporters"
    __table_args__ = (PrimaryKeyConstraint("device_id", "model_version", "hardware_class", "site"),)

    device_id: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(64))
    hardware_class: Mapped[str] = mapped_column(String(63))
    site: Mapped[str] = mapped_column(String(128))
    """the device's ``site`` label when the window arrived, ``""``: none (as on the model windows)"""
    last_end_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
