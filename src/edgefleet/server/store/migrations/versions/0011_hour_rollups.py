"""telemetry: per-hour rollups beside the per-minute ones, for model health over days and weeks

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SUMS = (
    "requests",
    "errors",
    "input_faults",
    "latency_sum_ms",
    "shadow_compared",
    "shadow_agreement_sum",
    "health_passed",
    "health_failed",
)
_MAPS = (
    "errors_by_code",
    "requests_by_rung",
    "latency_buckets",
    "health_failed_by_code",
    "input_faults_by_code",
    "degraded_s",
)


def upgrade() -> None:
    op.create_table(
        "telemetry_hour_rollups",
        sa.Column("hour_at", sa.DateTime(timezone=True), nullable=False),
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
        sa.Column("shadow_stats", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("health_passed", sa.BigInteger(), nullable=False),
        sa.Column("health_failed", sa.BigInteger(), nullable=False),
        sa.Column("health_failed_by_code", sa.JSON(), nullable=False),
        sa.Column("input_faults", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("input_faults_by_code", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("degraded_s", sa.JSON(), nullable=False),
        sa.Column("max_late_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour_at", "hardware_class", "model_version", "site", name=op.f("pk_telemetry_hour_rollups")
        ),
    )
    _backfill()


def _hour(at: object) -> datetime:
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    assert isinstance(at, datetime)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _counts(value: object) -> dict[str, float]:
    if isinstance(value, str):
        value = json.loads(value)
    return {str(k): v for k, v in (value or {}).items()} if isinstance(value, dict) else {}


def _backfill() -> None:
    """Sum the minute rollups already stored into hours. The detailed shadow statistics are not carried
    (their merge rule lives in the application); the compared count and agreement sum are."""
    bind = op.get_bind()
    cells: dict[tuple, dict] = {}
    columns = ", ".join(("minute_at", "hardware_class", "model_version", "site", *_SUMS, *_MAPS))
    query = f"SELECT {columns}, latency_max_ms, max_late_s FROM telemetry_rollups"  # noqa: S608
    for row in bind.execute(sa.text(query)).mappings():
        key = (_hour(row["minute_at"]), row["hardware_class"], row["model_version"], row["site"])
        cell = cells.setdefault(
            key,
            {**dict.fromkeys(_SUMS, 0), **{m: {} for m in _MAPS}, "latency_max_ms": 0.0, "max_late_s": 0.0},
        )
        for name in _SUMS:
            cell[name] += row[name] or 0
        for name in ("latency_max_ms", "max_late_s"):
            cell[name] = max(cell[name], row[name] or 0.0)
        for name in _MAPS:
            for k, v in _counts(row[name]).items():
                cell[name][k] = cell[name].get(k, 0) + v
    if cells:
        table = sa.table(
            "telemetry_hour_rollups",
            *(sa.column(c) for c in ("hour_at", "hardware_class", "model_version", "site")),
            *(sa.column(c) for c in (*_SUMS, "latency_max_ms", "max_late_s")),
            *(sa.column(c, sa.JSON) for c in (*_MAPS, "shadow_stats")),
        )
        op.bulk_insert(
            table,
            [
                {
                    "hour_at": k[0],
                    "hardware_class": k[1],
                    "model_version": k[2],
                    "site": k[3],
                    **v,
                    "shadow_stats": {},
                }
                for k, v in cells.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("telemetry_hour_rollups")
