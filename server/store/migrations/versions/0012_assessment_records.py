"""the assessment people keep: thresholds versions, inspectors' findings, verdict and
probation decisions, appeals and the session corrections they make, and the case
workflow (assignment, call-back, rectification, reopening, with its history)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_CASE_COLUMNS = (
    ("assigned_to", sa.String(length=64)),
    ("assigned_ms", sa.BigInteger()),
    ("callback_ms", sa.BigInteger()),
    ("callback_outcome", sa.String(length=24)),
    ("callback_note", sa.Text()),
    ("rectification", sa.Text()),
    ("rectified_ms", sa.BigInteger()),
    ("closed_by", sa.String(length=64)),
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("not_counted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("cases") as batch:
        for name, kind in _CASE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.add_column(sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "case_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_actions_case", "case_actions", ["case_id", "id"])
    op.create_table(
        "threshold_sets",
        sa.Column("version", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=96), nullable=False),
        sa.Column("from_month", sa.String(length=7), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_index("ix_threshold_sets_scope", "threshold_sets", ["scope", "from_month", "version"])
    op.create_table(
        "findings",
        sa.Column("finding_id", sa.String(length=36), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("clerk_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("criterion", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("observed_ms", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("video_ms", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.Column("withdrawn_ms", sa.BigInteger(), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=64), nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("finding_id"),
    )
    op.create_index("ix_findings_clerk_observed", "findings", ["clerk_id", "observed_ms"])
    op.create_index("ix_findings_site_observed", "findings", ["site", "observed_ms"])
    op.create_table(
        "verdict_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clerk_id", sa.String(length=32), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("computed_result", sa.String(length=32), nullable=False),
        sa.Column("computed", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("decided_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_verdict_decisions_clerk", "verdict_decisions", ["clerk_id", "month", "id"])
    op.create_index("ix_verdict_decisions_site", "verdict_decisions", ["site", "month"])
    op.create_table(
        "probation_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clerk_id", sa.String(length=32), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("decided_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_probation_decisions_clerk", "probation_decisions", ["clerk_id", "id"])
    op.create_table(
        "appeals",
        sa.Column("appeal_id", sa.String(length=36), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("clerk_id", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("criterion", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("filed_by", sa.String(length=64), nullable=False),
        sa.Column("filed_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("appeal_id"),
    )
    op.create_index("ix_appeals_clerk", "appeals", ["clerk_id", "filed_ms"])
    op.create_index("ix_appeals_site_status", "appeals", ["site", "status", "filed_ms"])
    op.create_table(
        "session_corrections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("appeal_id", sa.String(length=36), nullable=False),
        sa.Column("column", sa.String(length=32), nullable=False),
        sa.Column("before", sa.Boolean(), nullable=True),
        sa.Column("after", sa.Boolean(), nullable=True),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_session_corrections_session", "session_corrections", ["session_id"])


def downgrade() -> None:
    for table in (
        "session_corrections",
        "appeals",
        "probation_decisions",
        "verdict_decisions",
        "findings",
        "threshold_sets",
        "case_actions",
    ):
        op.drop_table(table)
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("reopened")
        for name, _ in reversed(_CASE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("not_counted")
