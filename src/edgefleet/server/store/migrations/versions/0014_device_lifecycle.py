"""devices: decommissioning and an inventory summary (OS, CPU, runtimes) for fleet filters

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("decommissioned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("inventory", sa.JSON(), nullable=True))
        batch.create_index(batch.f("ix_devices_decommissioned_at"), ["decommissioned_at"])


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_index(batch.f("ix_devices_decommissioned_at"))
        batch.drop_column("inventory")
        batch.drop_column("decommissioned_at")
