"""rollouts: a bounded history of each evaluation's gate rows and device counts (a rollout's story)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollout_gate_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rollout_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("exposed", sa.Integer(), nullable=False),
        sa.Column("rolled_back", sa.Integer(), nullable=True),
        sa.Column("still_on_new", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_gate_history_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_gate_history")),
    )
    op.create_index(
        op.f("ix_rollout_gate_history_rollout_id"), "rollout_gate_history", ["rollout_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rollout_gate_history_rollout_id"), table_name="rollout_gate_history")
    op.drop_table("rollout_gate_history")
