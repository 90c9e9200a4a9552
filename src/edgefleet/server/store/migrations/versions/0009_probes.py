"""probes: probe jobs and the devices asked to measure them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "probes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=63), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("bundle", sa.JSON(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("devices_asked", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("sustained_s", sa.Float(), nullable=False),
        sa.Column("time_limit_s", sa.Float(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probes")),
    )
    op.create_index(op.f("ix_probes_model"), "probes", ["model"])
    op.create_index(op.f("ix_probes_hardware_class"), "probes", ["hardware_class"])
    op.create_table(
        "probe_devices",
        sa.Column("probe_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["probe_id"], ["probes.id"], name=op.f("fk_probe_devices_probe_id_probes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("probe_id", "device_id", name=op.f("pk_probe_devices")),
    )
    op.create_index(op.f("ix_probe_devices_device_id"), "probe_devices", ["device_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_probe_devices_device_id"), table_name="probe_devices")
    op.drop_table("probe_devices")
    op.drop_index(op.f("ix_probes_hardware_class"), table_name="probes")
    op.drop_index(op.f("ix_probes_model"), table_name="probes")
    op.drop_table("probes")
