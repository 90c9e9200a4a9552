"""devices: report summary columns for fleet views

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("report_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("report_active", sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column("report_error_code", sa.String(length=64), nullable=True))
    devices = sa.table(
        "devices",
        sa.column("id", sa.String),
        sa.column("report", sa.JSON),
        sa.column("report_status", sa.String),
        sa.column("report_active", sa.String),
        sa.column("report_error_code", sa.String),
    )
    bind = op.get_bind()
    for device_id, report in bind.execute(sa.select(devices.c.id, devices.c.report)).all():
        if isinstance(report, str):
            report = json.loads(report)
        if not report:
            continue
        slots = report.get("slots") or {}
        active = ";".join(
            f"{s}={v['active']}" for s, v in sorted(slots.items()) if isinstance(v, dict) and v.get("active")
        )
        bind.execute(
            devices.update()
            .where(devices.c.id == device_id)
            .values(
                report_status=str(report.get("status") or "")[:16] or None,
                report_active=active[:1000] or None,
                report_error_code=str((report.get("last_error") or {}).get("code") or "")[:64] or None,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        for column in ("report_error_code", "report_active", "report_status"):
            batch.drop_column(column)
