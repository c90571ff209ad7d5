"""outbound: the durable delivery queue, per-target status and the units' switches

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(48), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("site", sa.String(32), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_ms", sa.BigInteger(), nullable=True),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ux_outbound_target_key", "outbound_deliveries", ["target", "key"], unique=True)
    op.create_index("ix_outbound_status_due", "outbound_deliveries", ["status", "due_ms"])
    op.create_table(
        "outbound_status",
        sa.Column("target", sa.String(48), primary_key=True),
        sa.Column("last_success_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_table(
        "outbound_switches",
        sa.Column("target", sa.String(48), primary_key=True),
        sa.Column("site", sa.String(32), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbound_switches")
    op.drop_table("outbound_status")
    op.drop_index("ix_outbound_status_due", table_name="outbound_deliveries")
    op.drop_index("ux_outbound_target_key", table_name="outbound_deliveries")
    op.drop_table("outbound_deliveries")
