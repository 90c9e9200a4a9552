"""telemetry: windows, per-model windows, events, device queue state

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_windows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("late_s", sa.Float(), nullable=False),
        sa.Column("degraded_s", sa.JSON(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_windows")),
        sa.UniqueConstraint(
            "device_id", "boot_id", "sequence", name=op.f("uq_telemetry_windows_device_id_boot_id_sequence")
        ),
    )
    op.create_index(op.f("ix_telemetry_windows_device_id"), "telemetry_windows", ["device_id"])
    op.create_index(op.f("ix_telemetry_windows_hardware_class"), "telemetry_windows", ["hardware_class"])
    op.create_index(op.f("ix_telemetry_windows_end_at"), "telemetry_windows", ["end_at"])
    op.create_table(
        "telemetry_model_windows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["telemetry_windows.id"],
            name=op.f("fk_telemetry_model_windows_window_id_telemetry_windows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_model_windows")),
    )
    for column in ("window_id", "device_id", "hardware_class", "model_version", "end_at"):
        op.create_index(op.f(f"ix_telemetry_model_windows_{column}"), "telemetry_model_windows", [column])
    op.create_table(
        "telemetry_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_events")),
        sa.UniqueConstraint(
            "device_id", "boot_id", "sequence", name=op.f("uq_telemetry_events_device_id_boot_id_sequence")
        ),
    )
    op.create_index(op.f("ix_telemetry_events_device_id"), "telemetry_events", ["device_id"])
    op.create_index(op.f("ix_telemetry_events_received_at"), "telemetry_events", ["received_at"])
    op.create_index(op.f("ix_telemetry_events_kind"), "telemetry_events", ["kind"])
    op.create_table(
        "telemetry_devices",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("dropped", sa.JSON(), nullable=False),
        sa.Column("queue_bytes", sa.BigInteger(), nullable=False),
        sa.Column("queue_records", sa.BigInteger(), nullable=False),
        sa.Column("last_batch_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_window_end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("records_accepted", sa.BigInteger(), nullable=False),
        sa.Column("records_duplicate", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_telemetry_devices")),
    )


def downgrade() -> None:
    for table in ("telemetry_devices", "telemetry_events", "telemetry_model_windows", "telemetry_windows"):
        op.drop_table(table)
