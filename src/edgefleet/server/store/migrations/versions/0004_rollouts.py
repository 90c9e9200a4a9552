"""rollouts: rollouts, members, events, active locks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=63), nullable=False),
        sa.Column("slot", sa.String(length=63), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("stage_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_stage", sa.Integer(), nullable=False),
        sa.Column("halt_reason", sa.JSON(), nullable=True),
        sa.Column("last_decision", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_index(op.f("ix_rollouts_model"), "rollouts", ["model"])
    op.create_index(op.f("ix_rollouts_status"), "rollouts", ["status"])
    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_devices_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "device_id", name=op.f("pk_rollout_devices")),
    )
    op.create_index(op.f("ix_rollout_devices_device_id"), "rollout_devices", ["device_id"])
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=63), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_events_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_events")),
    )
    op.create_index(op.f("ix_rollout_events_rollout_id"), "rollout_events", ["rollout_id"])
    op.create_table(
        "rollout_locks",
        sa.Column("model", sa.String(length=63), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_locks_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model", "hardware_class", name=op.f("pk_rollout_locks")),
    )
    op.create_index(op.f("ix_rollout_locks_rollout_id"), "rollout_locks", ["rollout_id"])


def downgrade() -> None:
    for table in ("rollout_locks", "rollout_events", "rollout_devices", "rollouts"):
        op.drop_table(table)
