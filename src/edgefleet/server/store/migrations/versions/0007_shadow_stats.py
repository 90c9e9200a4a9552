"""telemetry: shadow agreement statistics (counts, sums, maxima, latency histograms) on model windows and
rollups

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLES = ("telemetry_model_windows", "telemetry_rollups")


def upgrade() -> None:
    # Rows already stored came from agents that sent only the compared count and the agreement sum: their
    # statistics are empty, which every reader treats as zero comparisons of each kind.
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("shadow_stats", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("shadow_stats")
