"""badge and PIN credentials of clerks, as salted digests; a salt per centre

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clerk_credentials",
        sa.Column("clerk_id", sa.String(length=32), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("badges", sa.JSON(), nullable=False),
        sa.Column("pin", sa.String(length=64), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("clerk_id"),
    )
    op.create_index("ix_clerk_credentials_site", "clerk_credentials", ["site"], unique=False)
    op.create_table(
        "site_salts",
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("site"),
    )


def downgrade() -> None:
    op.drop_table("site_salts")
    op.drop_index("ix_clerk_credentials_site", table_name="clerk_credentials")
    op.drop_table("clerk_credentials")
