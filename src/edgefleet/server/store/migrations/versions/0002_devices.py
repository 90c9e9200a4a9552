"""devices: enrollment tokens, devices, nonces, pins

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=True),
        sa.Column("uses_total", sa.Integer(), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["hardware_class"],
            ["hardware_classes.name"],
            name=op.f("fk_enrollment_tokens_hardware_class_hardware_classes"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_enrollment_tokens_token_sha256")),
    )
    op.create_index(op.f("ix_enrollment_tokens_hardware_class"), "enrollment_tokens", ["hardware_class"])
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("public_key_pem", sa.String(length=512), nullable=False),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("hardware_class", sa.String(length=63), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=True),
        sa.Column("enrollment_token_id", sa.String(length=32), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=2000), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("report_boot_id", sa.String(length=64), nullable=True),
        sa.Column("report_sequence", sa.Integer(), nullable=False),
        sa.Column("desired_generation", sa.Integer(), nullable=False),
        sa.Column("desired_digest", sa.String(length=64), nullable=True),
        sa.Column("desired_envelope", sa.JSON(), nullable=True),
        sa.Column("desired_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("desired_epoch", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hardware_class"],
            ["hardware_classes.name"],
            name=op.f("fk_devices_hardware_class_hardware_classes"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("public_key_sha256", name=op.f("uq_devices_public_key_sha256")),
    )
    op.create_index(op.f("ix_devices_hardware_class"), "devices", ["hardware_class"])
    op.create_index(op.f("ix_devices_serial"), "devices", ["serial"])
    op.create_index(op.f("ix_devices_last_seen_at"), "devices", ["last_seen_at"])
    epoch = op.create_table(
        "director_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_director_epoch")),
    )
    op.bulk_insert(epoch, [{"id": 1, "value": 1}])
    op.create_table(
        "device_nonces",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "nonce", name=op.f("pk_device_nonces")),
    )
    op.create_index(op.f("ix_device_nonces_seen_at"), "device_nonces", ["seen_at"])
    op.create_table(
        "pins",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=63), nullable=False),
        sa.Column("slot", sa.String(length=63), nullable=False),
        sa.Column("artifact_id", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_pins_artifact_id_artifacts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pins")),
        sa.UniqueConstraint("scope", "target", "slot", name=op.f("uq_pins_scope_target_slot")),
    )
    op.create_index(op.f("ix_pins_target"), "pins", ["target"])
    op.create_index(op.f("ix_pins_artifact_id"), "pins", ["artifact_id"])


def downgrade() -> None:
    for table in ("pins", "device_nonces", "director_epoch", "devices", "enrollment_tokens"):
        op.drop_table(table)
