"""telemetry: per-minute rollups for fleet health; the device's site on model windows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_rollups",
        sa.Column("minute_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=128), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("errors_by_code", sa.JSON(), nullable=False),
        sa.Column("requests_by_rung", sa.JSON(), nullable=False),
        sa.Column("latency_buckets", sa.JSON(), nullable=False),
        sa.Column("latency_sum_ms", sa.Float(), nullable=False),
        sa.Column("latency_max_ms", sa.Float(), nullable=False),
        sa.Column("shadow_compared", sa.BigInteger(), nullable=False),
        sa.Column("shadow_agreement_sum", sa.Float(), nullable=False),
        sa.Column("health_passed", sa.BigInteger(), nullable=False),
        sa.Column("health_failed", sa.BigInteger(), nullable=False),
        sa.Column("health_failed_by_code", sa.JSON(), nullable=False),
        sa.Column("degraded_s", sa.JSON(), nullable=False),
        sa.Column("max_late_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "minute_at", "hardware_class", "model_version", "site", name=op.f("pk_telemetry_rollups")
        ),
    )
    with op.batch_alter_table("telemetry_model_windows") as batch:
        batch.add_column(sa.Column("site", sa.String(length=128), nullable=False, server_default=""))
    _backfill()


_SUMS = (
    "requests",
    "errors",
    "latency_sum_ms",
    "shadow_compared",
    "shadow_agreement_sum",
    "health_passed",
    "health_failed",
)
_MAPS = ("errors_by_code", "requests_by_rung", "latency_buckets", "health_failed_by_code")


def _empty_cell() -> dict:
    return {
        **dict.fromkeys(_SUMS, 0),
        **{m: {} for m in _MAPS},
        "latency_max_ms": 0.0,
        "degraded_s": {},
        "max_late_s": 0.0,
    }


def _minute(end_at: object) -> datetime:
    if isinstance(end_at, str):
        end_at = datetime.fromisoformat(end_at)
    assert isinstance(end_at, datetime)
    if end_at.tzinfo is None:
        end_at = end_at.replace(tzinfo=timezone.utc)
    return end_at.astimezone(timezone.utc).replace(second=0, microsecond=0)


def _counts(value: object) -> dict[str, float]:
    if isinstance(value, str):
        value = json.loads(value)
    return {str(k): v for k, v in (value or {}).items()} if isinstance(value, dict) else {}


def _backfill() -> None:
    """Roll up the windows already stored (same rule as ingest: minute of the window's end, device site)."""
    bind = op.get_bind()
    sites = {}
    for device_id, labels in bind.execute(sa.text("SELECT id, labels FROM devices")):
        labels = json.loads(labels) if isinstance(labels, str) else (labels or {})
        sites[device_id] = str(labels.get("site", ""))[:128]
    cells: dict[tuple, dict] = {}
    columns = (
        "device_id, hardware_class, model_version, end_at, requests, errors, errors_by_code, "
        "requests_by_rung, latency_buckets, latency_sum_ms, latency_max_ms, shadow_compared, "
        "shadow_agreement_sum, health_passed, health_failed, health_failed_by_code"
    )
    for device_id, site in sites.items():
        if site:
            bind.execute(
                sa.text("UPDATE telemetry_model_windows SET site = :site WHERE device_id = :device"),
                {"site": site, "device": device_id},
            )
    for row in bind.execute(sa.text(f"SELECT {columns} FROM telemetry_model_windows")).mappings():  # noqa: S608
        key = (
            _minute(row["end_at"]),
            row["hardware_class"],
            row["model_version"],
            sites.get(row["device_id"], ""),
        )
        cell = cells.setdefault(key, _empty_cell())
        for name in _SUMS:
            cell[name] = cell.get(name, 0) + (row[name] or 0)
        cell["latency_max_ms"] = max(cell["latency_max_ms"], row["latency_max_ms"] or 0.0)
        for name in _MAPS:
            merged = cell.setdefault(name, {})
            for k, v in _counts(row[name]).items():
                merged[k] = merged.get(k, 0) + v
    windows = "SELECT device_id, hardware_class, end_at, degraded_s, late_s FROM telemetry_windows"
    for row in bind.execute(sa.text(windows)).mappings():
        key = (_minute(row["end_at"]), row["hardware_class"], "", sites.get(row["device_id"], ""))
        cell = cells.setdefault(key, _empty_cell())
        for k, v in _counts(row["degraded_s"]).items():
            cell["degraded_s"][k] = cell["degraded_s"].get(k, 0) + v
        cell["max_late_s"] = max(cell["max_late_s"], row["late_s"] or 0.0)
    if cells:
        table = sa.table(
            "telemetry_rollups",
            *(sa.column(c) for c in ("minute_at", "hardware_class", "model_version", "site")),
            *(sa.column(c) for c in (*_SUMS, "latency_max_ms", "max_late_s")),
            *(sa.column(c, sa.JSON) for c in (*_MAPS, "degraded_s")),
        )
        op.bulk_insert(
            table,
            [
                {"minute_at": k[0], "hardware_class": k[1], "model_version": k[2], "site": k[3], **v}
                for k, v in cells.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("telemetry_rollups")
