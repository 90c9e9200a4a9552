"""telemetry: each device's newest request and success times (over its slots) as indexed columns, so fleet
health finds the devices that may be answering nothing without reading every device's slots

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("telemetry_devices") as batch:
        batch.add_column(sa.Column("last_request_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_telemetry_devices_last_request_at", "telemetry_devices", ["last_request_at"])


def downgrade() -> None:
    op.drop_index("ix_telemetry_devices_last_request_at", table_name="telemetry_devices")
    with op.batch_alter_table("telemetry_devices") as batch:
        batch.drop_column("last_success_at")
        batch.drop_column("last_request_at")
