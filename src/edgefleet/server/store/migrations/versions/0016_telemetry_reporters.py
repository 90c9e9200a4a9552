"""telemetry: when each (device, model version, class, site) last reported, for fleet health's device counts

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_reporters",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("site", sa.String(length=128), nullable=False),
        sa.Column("last_end_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "device_id", "model_version", "hardware_class", "site", name=op.f("pk_telemetry_reporters")
        ),
    )
    op.create_index(
        op.f("ix_telemetry_reporters_last_end_at"), "telemetry_reporters", ["last_end_at"], unique=False
    )
    # Backfill from the model windows kept: the newest end of each (device, version, class, site).
    op.execute(
        "INSERT INTO telemetry_reporters (device_id, model_version, hardware_class, site, last_end_at)"
        " SELECT device_id, model_version, hardware_class, site, MAX(end_at) FROM telemetry_model_windows"
        " GROUP BY device_id, model_version, hardware_class, site"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_telemetry_reporters_last_end_at"), table_name="telemetry_reporters")
    op.drop_table("telemetry_reporters")
