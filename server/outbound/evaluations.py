"""Evaluation forwarding to the 好差评 system: the field mapping, versioned, and the hook
that queues each newly stored evaluation in the ingest transaction.

One delivery per (target, evaluation): the key is the evaluation's event id, sent as the
``Idempotency-Key`` header and the ``idempotency_key`` field, so a receiver that sees an
evaluation twice (at-least-once delivery, server/outbound/queue.py) stores it once.

Mapping version ``ww-eval-1`` (docs/outbound.md has the table):

=====================  ==========================================================
``evaluation_id``      the evaluation's event id (also ``idempotency_key``)
``session_id``         the service's session id
``matter_code``        service matter code (事项编码), when the queue system gave it
``ticket``             the queue ticket (取号), when there was one
``case_number``        the business system's case number (办件编号), when given
``site``, ``window``   the centre and the window
``clerk_staff_id``     the clerk's staff id, when one was signed in
``level``              1-5: 非常满意 5, 满意 4, 基本满意 3, 不满意 2, 非常不满意 1
``rating``             the same as our code (``very_satisfied`` ...)
``channel``            always ``window evaluator`` (the hall's 评价器)
``evaluated_at``       ISO 8601 UTC with milliseconds; ``evaluated_ms`` the same in ms
``suspect_press``      the press looked suspect (too fast, repeated); never dropped
``suspect_reason``     why, when it did
=====================  ==========================================================

The terminal sends the rating a moment before the session's summary, so the ticket and
case number may not be stored yet when the evaluation is: the delivery waits
``HOLD_MS`` and its session's fields are read again when it is claimed (``complete``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import bindparam, select, update

from agent.protocol import now_ms
from server.outbound.queue import Claimed, delivery_row, enqueue_many
from server.outbound.targets import OutboundConfig
from server.store.schema import outbound_deliveries, sessions, units

MAPPING_VERSION: Final = "ww-eval-1"
KIND: Final = "evaluation"
CHANNEL: Final = "window evaluator"
#: How long a queued evaluation waits for its session's summary before the first try.
HOLD_MS: Final = 3_000
LEVELS: Final[dict[str, int]] = {
    "very_satisfied": 5,  # 非常满意
    "satisfied": 4,  # 满意
    "basically_satisfied": 3,  # 基本满意
    "dissatisfied": 2,  # 不满意
    "very_dissatisfied": 1,  # 非常不满意
}
SESSION_FIELDS: Final = ("matter_code", "ticket", "case_number")


def iso_utc(ms: int) -> str:
    """The time as ISO 8601 UTC with milliseconds.

    >>> iso_utc(1764633600123)
    '2025-12-02T00:00:00.123Z'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def body(ev: Mapping[str, Any], session: Mapping[str, Any] | None) -> dict[str, Any]:
    """The body one evaluation row (``evaluations`` table) is sent as."""
    s = session or {}
    return {
        "mapping_version": MAPPING_VERSION,
        "evaluation_id": ev["event_id"],
        "idempotency_key": ev["event_id"],
        "session_id": ev.get("session_id"),
        "matter_code": s.get("matter_code"),
        "ticket": s.get("ticket"),
        "case_number": s.get("case_number"),
        "site": ev["site"],
        "window": ev["window"],
        "clerk_staff_id": ev.get("clerk_id"),
        "level": LEVELS[str(ev["rating"])],
        "rating": str(ev["rating"]),
        "channel": CHANNEL,
        "evaluated_at": iso_utc(int(ev["ts_ms"])),
        "evaluated_ms": int(ev["ts_ms"]),
        "suspect_press": bool(ev.get("suspect")),
        "suspect_reason": ev.get("suspect_reason"),
    }


def _sessions(conn: Any, ids: set[str]) -> dict[str, Mapping[str, Any]]:
    if not ids:
        return {}
    q = select(sessions.c.session_id, *(sessions.c[f] for f in SESSION_FIELDS)).where(
        sessions.c.session_id.in_(sorted(ids))
    )
    return {r.session_id: r._mapping for r in conn.execute(q)}


class Forwarding:
    """The ingest hook (``Writes.outbound_hooks``): queue each newly stored evaluation
    for every http target that takes kind "evaluation" and serves its unit, in one
    insert per ingest batch. With no such target it reads and writes nothing."""

    def __init__(self, config: OutboundConfig) -> None:
        self.targets = [t for t in config.taking(KIND) if t.type == "http"]
        self._district: dict[str, str | None] = {}

    def _districts(self, conn: Any, sites: set[str]) -> dict[str, str | None]:
        if not sites <= self._district.keys():
            for r in conn.execute(select(units.c.site, units.c.district)):
                self._district[r.site] = r.district
            for s in sites - self._district.keys():
                self._district[s] = None
        return self._district

    def __call__(self, conn: Any, inserted: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        evs = inserted.get("evaluations", ())
        if not evs or not self.targets:
            return 0
        district = self._districts(conn, {str(e["site"]) for e in evs})
        joined = _sessions(conn, {str(e["session_id"]) for e in evs if e.get("session_id")})
        at = now_ms()
        rows = [
            delivery_row(
                target=t.name,
                key=str(e["event_id"]),
                kind=KIND,
                body=body(e, joined.get(str(e.get("session_id")))),
                at_ms=at,
                site=str(e["site"]),
            )
            | {"due_ms": at + HOLD_MS}
            for e in evs
            for t in self.targets
            if t.serves(str(e["site"]), district.get(str(e["site"])))
        ]
        return enqueue_many(conn, rows)


def complete(conn: Any, claimed: Sequence[Claimed]) -> list[Claimed]:
    """Claimed evaluations with their session's matter, ticket and case number filled
    in where the session was stored after them (the filled body is kept)."""
    missing = {
        str(c.body["session_id"])
        for c in claimed
        if c.kind == KIND
        and c.body.get("session_id")
        and any(c.body.get(f) is None for f in SESSION_FIELDS)
    }
    found = _sessions(conn, missing)
    out: list[Claimed] = []
    changed: list[dict[str, Any]] = []
    for c in claimed:
        s = found.get(str(c.body.get("session_id"))) if c.kind == KIND else None
        if s is not None:
            new = dict(c.body) | {f: c.body.get(f) or s[f] for f in SESSION_FIELDS}
            if new != c.body:
                c = replace(c, body=new)
                changed.append({"k_id": c.id, "k_body": new})
        out.append(c)
    if changed:
        od = outbound_deliveries
        conn.execute(
            update(od).where(od.c.id == bindparam("k_id")).values(body=bindparam("k_body")),
            changed,
        )
    return out
