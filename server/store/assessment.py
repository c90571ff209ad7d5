"""What people record about a clerk's month (A-PASS, A-REVIEW): thresholds versions,
inspectors' findings, verdict and probation decisions, appeals, and the corrections an
upheld appeal makes to a session.

Functions take the caller's connection, so a change and its audit entry commit in one
transaction (``server.api.access``). Nothing here is ever deleted: a finding is
withdrawn, a decision superseded by a later one, an appeal resolved; a corrected
session keeps its old value in ``session_corrections``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from sqlalchemy import Connection, select, update

from server.policy.rows import UNOBSERVED
from server.policy.thresholds import ThresholdVersion
from server.store import rollups
from server.store.schema import (
    appeals,
    findings,
    probation_decisions,
    session_corrections,
    sessions,
    threshold_sets,
    verdict_decisions,
)

#: The session verdicts an appeal may contest (and a manager correct).
CORRECTABLE: Final = tuple(UNOBSERVED)
NOT_COUNTED: Final = "not_counted"


def _rows(conn: Connection, q: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(q)]


# ------------------------------------------------------------------ thresholds


def threshold_versions(conn: Connection, scopes: Iterable[str]) -> list[ThresholdVersion]:
    q = select(threshold_sets).where(threshold_sets.c.scope.in_(list(scopes)))
    return [ThresholdVersion.of(r) for r in _rows(conn, q.order_by(threshold_sets.c.version))]


def threshold_history(conn: Connection, scopes: Iterable[str]) -> list[dict[str, Any]]:
    q = select(threshold_sets).where(threshold_sets.c.scope.in_(list(scopes)))
    return _rows(conn, q.order_by(threshold_sets.c.version.desc()))


def add_threshold_version(
    conn: Connection,
    scope: str,
    from_month: str,
    values: Mapping[str, Any],
    reason: str,
    by: str,
    at_ms: int,
) -> int:
    res = conn.execute(
        threshold_sets.insert().values(
            scope=scope,
            from_month=from_month,
            values=dict(values),
            reason=reason,
            created_by=by,
            created_ms=at_ms,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


# ------------------------------------------------------------------ findings


def add_finding(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(findings.insert().values(**row))


def withdraw_finding(conn: Connection, finding_id: str, by: str, at_ms: int, reason: str) -> bool:
    res = conn.execute(
        update(findings)
        .where(findings.c.finding_id == finding_id, findings.c.withdrawn_ms.is_(None))
        .values(withdrawn_ms=at_ms, withdrawn_by=by, withdrawn_reason=reason)
    )
    return bool(res.rowcount)


def finding_rows(
    conn: Connection,
    clerk_ids: Iterable[str],
    start_ms: int,
    end_ms: int,
) -> list[dict[str, Any]]:
    f = findings
    q = select(f).where(
        f.c.clerk_id.in_(list(clerk_ids)), f.c.observed_ms >= start_ms, f.c.observed_ms < end_ms
    )
    return _rows(conn, q.order_by(f.c.observed_ms, f.c.finding_id))


# ------------------------------------------------------------------ decisions


def add_verdict_decision(conn: Connection, row: Mapping[str, Any]) -> int:
    res = conn.execute(verdict_decisions.insert().values(**row))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def verdict_decision_rows(
    conn: Connection, clerk_ids: Iterable[str], month: str
) -> list[dict[str, Any]]:
    """Every decision on these clerks' month, oldest first (the last one stands)."""
    d = verdict_decisions
    q = select(d).where(d.c.clerk_id.in_(list(clerk_ids)), d.c.month == month)
    return _rows(conn, q.order_by(d.c.id))


def add_probation_decision(conn: Connection, row: Mapping[str, Any]) -> int:
    res = conn.execute(probation_decisions.insert().values(**row))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def probation_decision_rows(conn: Connection, clerk_ids: Iterable[str]) -> list[dict[str, Any]]:
    p = probation_decisions
    q = select(p).where(p.c.clerk_id.in_(list(clerk_ids)))
    return _rows(conn, q.order_by(p.c.id))


# ------------------------------------------------------------------ appeals


def add_appeal(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(appeals.insert().values(status="open", **row))


def appeal_row(conn: Connection, appeal_id: str) -> dict[str, Any] | None:
    rows = _rows(conn, select(appeals).where(appeals.c.appeal_id == appeal_id))
    return rows[0] if rows else None


def appeal_rows(
    conn: Connection,
    *,
    sites: frozenset[str] | None,
    clerk_id: str | None = None,
    status: str | None = None,
    month: str | None = None,
) -> list[dict[str, Any]]:
    a = appeals
    q = select(a)
    if sites is not None:
        q = q.where(a.c.site.in_(sites))
    if clerk_id is not None:
        q = q.where(a.c.clerk_id == clerk_id)
    if status is not None:
        q = q.where(a.c.status == status)
    if month is not None:
        q = q.where(a.c.month == month)
    return _rows(conn, q.order_by(a.c.filed_ms.desc(), a.c.appeal_id))


def resolve_appeal(conn: Connection, appeal_id: str, values: Mapping[str, Any]) -> bool:
    res = conn.execute(
        update(appeals)
        .where(appeals.c.appeal_id == appeal_id, appeals.c.status == "open")
        .values(**values)
    )
    return bool(res.rowcount)


def session_row(conn: Connection, session_id: str) -> dict[str, Any] | None:
    rows = _rows(conn, select(sessions).where(sessions.c.session_id == session_id))
    return rows[0] if rows else None


def correct_session(
    conn: Connection, session_id: str, appeal_id: str, column: str, by: str, at_ms: int
) -> tuple[bool | None, bool | None]:
    """An upheld appeal's change to a session: its verdict ``column`` set to complied
    (and observed), or the session not counted at all (``column`` "not_counted"). The
    old value is kept in ``session_corrections``; the session's day is summed again in
    the rollups. Returns (before, after)."""
    s = session_row(conn, session_id)
    if s is None:
        raise KeyError(session_id)
    if column == NOT_COUNTED:
        before, after = bool(s["not_counted"]), True
        values: dict[str, Any] = {"not_counted": True}
    elif column in CORRECTABLE:
        before, after = s[column], True
        values = {column: True, UNOBSERVED[column]: False}
    else:
        raise ValueError(f"criterion: not a session verdict ({', '.join(CORRECTABLE)})")
    conn.execute(update(sessions).where(sessions.c.session_id == session_id).values(**values))
    conn.execute(
        session_corrections.insert().values(
            session_id=session_id,
            appeal_id=appeal_id,
            column=column,
            before=before,
            after=after,
            by=by,
            at_ms=at_ms,
        )
    )
    rollups.rebuild(conn, s["opened_ms"], s["opened_ms"], site=s["site"], window=s["window"])
    return before, after


def correction_rows(conn: Connection, session_ids: Iterable[str]) -> list[dict[str, Any]]:
    c = session_corrections
    q = select(c).where(c.c.session_id.in_(list(session_ids)))
    return _rows(conn, q.order_by(c.c.id))
