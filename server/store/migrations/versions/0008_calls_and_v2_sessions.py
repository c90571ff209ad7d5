"""queue calls and contract version 2 on sessions: source, ticket, the call's matter,
priority category and case number, the farewell smile, the front desk's greeting

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SESSION_COLUMNS = (
    ("source", sa.String(length=16)),
    ("ticket", sa.String(length=64)),
    ("call_id", sa.String(length=64)),
    ("matter_code", sa.String(length=64)),
    ("matter_name", sa.String(length=64)),
    ("priority_category", sa.String(length=16)),
    ("case_number", sa.String(length=64)),
    ("smiled_at_farewell", sa.Boolean()),
    ("farewell_smile_after_ms", sa.BigInteger()),
    ("greeted_first", sa.Boolean()),
)


_ROLLUP_COLUMNS = ("priority", "priority_own", "farewell_smile_seen", "farewell_smiled")


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name, kind in _SESSION_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "queue_calls",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("ticket", sa.String(length=64), nullable=False),
        sa.Column("matter_code", sa.String(length=64), nullable=True),
        sa.Column("matter_name", sa.String(length=64), nullable=True),
        sa.Column("priority_category", sa.String(length=16), nullable=True),
        sa.Column("clerk_id", sa.String(length=32), nullable=True),
        sa.Column("case_number", sa.String(length=64), nullable=True),
        sa.Column("called_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("cmd_id", sa.String(length=36), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("call_id"),
    )
    op.create_index(
        "ix_queue_calls_window", "queue_calls", ["site", "window", "called_ms"], unique=False
    )
    with op.batch_alter_table("daily_rollups") as batch:
        for name in _ROLLUP_COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    # Sessions stored before counted priority citizens too: empty the rollups, and
    # Store.create rebuilds them from the sessions (as after 0004).
    op.execute("DELETE FROM daily_rollups")


def downgrade() -> None:
    with op.batch_alter_table("daily_rollups") as batch:
        for name in reversed(_ROLLUP_COLUMNS):
            batch.drop_column(name)
    op.drop_index("ix_queue_calls_window", table_name="queue_calls")
    op.drop_table("queue_calls")
    with op.batch_alter_table("sessions") as batch:
        for name, _ in reversed(_SESSION_COLUMNS):
            batch.drop_column(name)
