"""telemetry: input faults apart from model errors (model windows and rollups); each device's slots' field
status (last success, last request, errors by kind, update status) and its latest resources

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COUNTED = ("telemetry_model_windows", "telemetry_rollups")


def upgrade() -> None:
    # Rows already stored came from agents that counted input faults as errors (or not at all): zero here.
    for table in _COUNTED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("input_faults", sa.BigInteger(), nullable=False, server_default="0"))
            batch.add_column(
                sa.Column("input_faults_by_code", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
            )
    with op.batch_alter_table("telemetry_devices") as batch:
        batch.add_column(sa.Column("slots", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("telemetry_devices") as batch:
        batch.drop_column("resources")
        batch.drop_column("slots")
    for table in _COUNTED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("input_faults_by_code")
            batch.drop_column("input_faults")
