"""devices: the director epoch of the newest change that named each device; the epoch of the newest
change that may touch every device (targeted invalidation of stored documents and poll caches)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("director_mark", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index(op.f("ix_devices_director_mark"), ["director_mark"], unique=False)
    with op.batch_alter_table("director_epoch") as batch:
        batch.add_column(sa.Column("full_value", sa.Integer(), nullable=False, server_default="0"))
    # Every change so far counts as one that may touch every device: stored documents computed before
    # the upgrade are judged exactly as before (current only at the current epoch).
    op.execute("UPDATE director_epoch SET full_value = value")


def downgrade() -> None:
    with op.batch_alter_table("director_epoch") as batch:
        batch.drop_column("full_value")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index(op.f("ix_devices_director_mark"))
        batch.drop_column("director_mark")
