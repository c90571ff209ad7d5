"""contract version 3, what could be seen: per verdict whether a session's verdict was
not observed, and its observed share; rollups count the not-observed verdicts

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 05:00:00
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Written out, not imported: a migration keeps meaning what it meant when it was written.
_VERDICTS = (
    "stood_on_call",
    "smiled_at_greeting",
    "stood_at_farewell",
    "smiled_at_farewell",
    "greeted_first",
)
_ROLLUP_COLUMNS = (
    "stood_unobserved",
    "smiled_unobserved",
    "farewell_unobserved",
    "farewell_smile_unobserved",
    "greeted_first_unobserved",
    "unobserved",
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name in _VERDICTS:
            batch.add_column(
                sa.Column(
                    f"{name}_unobserved", sa.Boolean(), nullable=False, server_default=sa.false()
                )
            )
        batch.add_column(sa.Column("observed_share", sa.Float(), nullable=True))
    with op.batch_alter_table("daily_rollups") as batch:
        for name in _ROLLUP_COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    _backfill()
    # Every conduct rate's denominator changed: Store.create rebuilds the rollups.
    op.execute("DELETE FROM daily_rollups")


def _backfill() -> None:
    """Version 3 summaries stored before this revision (an ingest of the previous one
    already accepted them) had their "not observed" read as "did not": set it from the
    stored event. Only payloads that mention it are read."""
    conn = op.get_bind()
    found = conn.execute(
        sa.text(
            "SELECT s.session_id, e.payload, s.stood_at_farewell, s.smiled_at_farewell,"
            " s.greeted_first FROM sessions s JOIN events e ON e.event_id = s.event_id"
            " WHERE CAST(e.payload AS TEXT) LIKE '%not_observed%'"
        )
    )
    updates: list[dict[str, Any]] = []
    for session_id, payload, farewell, farewell_smile, greeted in found:
        doc = json.loads(payload) if isinstance(payload, str) else payload
        named = set(doc.get("not_observed") or ())
        judged = {
            "stood_on_call": True,
            "smiled_at_greeting": True,
            "stood_at_farewell": farewell is not None,
            "smiled_at_farewell": farewell_smile is not None,
            "greeted_first": greeted is not None,
        }
        row = {
            f"{v}_unobserved": v in named and judged[v] and doc.get(v) is False for v in _VERDICTS
        }
        updates.append({"sid": session_id, "share": doc.get("observed_share"), **row})
    if updates:
        sets = ", ".join(f"{v}_unobserved = :{v}_unobserved" for v in _VERDICTS)
        conn.execute(
            sa.text(f"UPDATE sessions SET {sets}, observed_share = :share WHERE session_id = :sid"),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("daily_rollups") as batch:
        for name in reversed(_ROLLUP_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("observed_share")
        for name in reversed(_VERDICTS):
            batch.drop_column(f"{name}_unobserved")
    op.execute("DELETE FROM daily_rollups")
