"""a front desk's receptions: no farewell to judge (sessions.stood_at_farewell may be
null), rollups count the sessions with a farewell and the receptions greeted first

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ROLLUP_COLUMNS = ("farewell_due", "receptions", "greeted_first")


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.alter_column("stood_at_farewell", existing_type=sa.Boolean(), nullable=True)
    with op.batch_alter_table("daily_rollups") as batch:
        for name in _ROLLUP_COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    # Reception rows stored before had a farewell "missed": they have none.
    op.execute("UPDATE sessions SET stood_at_farewell = NULL WHERE greeted_first IS NOT NULL")
    # Every rate's denominator changed: Store.create rebuilds the rollups (as after 0004).
    op.execute("DELETE FROM daily_rollups")


def downgrade() -> None:
    with op.batch_alter_table("daily_rollups") as batch:
        for name in reversed(_ROLLUP_COLUMNS):
            batch.drop_column(name)
    op.execute("UPDATE sessions SET stood_at_farewell = false WHERE stood_at_farewell IS NULL")
    with op.batch_alter_table("sessions") as batch:
        batch.alter_column("stood_at_farewell", existing_type=sa.Boolean(), nullable=False)
