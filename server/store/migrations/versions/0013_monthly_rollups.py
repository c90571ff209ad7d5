"""monthly rollups (the daily ones summed per local month), and the daily rollups count
the smile-star ranking's exemplary sessions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Written out, not imported: a migration keeps meaning what it meant when it was written.
_SUMS = (
    "sessions",
    "stood",
    "smiled",
    "farewell",
    "see_off",
    "broad",
    "rated",
    "very_satisfied",
    "satisfied",
    "basically_satisfied",
    "dissatisfied",
    "very_dissatisfied",
    "suspect",
    "away_violations",
    "away_ms",
    "priority",
    "priority_own",
    "farewell_smile_seen",
    "farewell_smiled",
    "farewell_due",
    "receptions",
    "greeted_first",
    "stood_unobserved",
    "smiled_unobserved",
    "farewell_unobserved",
    "farewell_smile_unobserved",
    "greeted_first_unobserved",
    "unobserved",
    "exemplary",
    "exemplary_modest",
)
_NEW = ("exemplary", "exemplary_modest")


def upgrade() -> None:
    with op.batch_alter_table("daily_rollups") as batch:
        for name in _NEW:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "monthly_rollups",
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("month_ms", sa.BigInteger(), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("clerk_id", sa.String(length=32), nullable=False),
        *(
            sa.Column(
                name,
                sa.BigInteger() if name == "away_ms" else sa.Integer(),
                nullable=False,
                server_default="0",
            )
            for name in _SUMS
        ),
        sa.PrimaryKeyConstraint("site", "month_ms", "window", "clerk_id"),
    )
    # The new daily columns are 0 in every stored row: Store.create rebuilds the daily
    # rollups, and the monthly ones from them (as after 0010 and 0011).
    op.execute("DELETE FROM daily_rollups")


def downgrade() -> None:
    op.drop_table("monthly_rollups")
    with op.batch_alter_table("daily_rollups") as batch:
        for name in _NEW:
            batch.drop_column(name)
