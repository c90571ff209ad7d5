"""shifts: where a sign-in came from and who recorded it; the planned roster

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("roster") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="manager")
        )
        batch.add_column(sa.Column("recorded_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("recorded_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("end_source", sa.String(length=16), nullable=True))
    op.create_index("ix_roster_clerk", "roster", ["clerk_id", "start_ms"], unique=False)
    op.create_table(
        "roster_plan",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("clerk_id", sa.String(length=32), nullable=False),
        sa.Column("from_ms", sa.BigInteger(), nullable=False),
        sa.Column("to_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_roster_plan_site", "roster_plan", ["site", "from_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_roster_plan_site", table_name="roster_plan")
    op.drop_table("roster_plan")
    op.drop_index("ix_roster_clerk", table_name="roster")
    with op.batch_alter_table("roster") as batch:
        batch.drop_column("end_source")
        batch.drop_column("recorded_by")
        batch.drop_column("recorded_ms")
        batch.drop_column("source")
