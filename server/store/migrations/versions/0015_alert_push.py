"""alert push: what each alerting target has had, and the row a planner locks

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_pushes",
        sa.Column("target", sa.String(48), primary_key=True),
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(32), nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("clerk_id", sa.String(32), nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("message_key", sa.String(64), nullable=True),
        sa.Column("message_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_alert_pushes_target_state", "alert_pushes", ["target", "state"])
    op.create_index("ix_alert_pushes_target_message", "alert_pushes", ["target", "message_ms"])
    op.create_table(
        "alert_push_targets",
        sa.Column("target", sa.String(48), primary_key=True),
        sa.Column("planned_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_push_targets")
    op.drop_index("ix_alert_pushes_target_message", table_name="alert_pushes")
    op.drop_index("ix_alert_pushes_target_state", table_name="alert_pushes")
    op.drop_table("alert_pushes")
