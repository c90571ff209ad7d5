"""case clock and sequence floors: provisional due dates, what retention deleted

``cases.due_provisional``: the due time was counted Monday to Friday over a year no
official calendar knew (server/workdays.py). Every open case of an older store had its due
time counted that way (no holidays, no adjusted working weekends), so they start flagged;
``Store.refresh_provisional_dues`` counts them again with the official calendar.

``seq_floors``: per device, the highest seq among the events retention deleted; sequence
gaps are looked for above it only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("due_provisional", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    cases = sa.table(
        "cases", sa.column("status", sa.String()), sa.column("due_provisional", sa.Boolean())
    )
    op.execute(cases.update().where(cases.c.status == "open").values(due_provisional=True))
    op.create_table(
        "seq_floors",
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("floor_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "window"),
    )


def downgrade() -> None:
    op.drop_table("seq_floors")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("due_provisional")
