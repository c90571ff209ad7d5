"""The queue system's calls: stored once by call id, and joined to the sessions they
opened.

A hall's queue-management system (叫号系统) calls a ticket to a window; the bridge
(``server/api/queue.py``) stores each call here before it tells the terminal, so a
replayed or repeated call (same ``call_id``) opens nothing new. The terminal's session
carries the call id (contract version 2) or at least the ticket; ``call_fields`` finds
the call a session's summary belongs to, so matter, priority category and case number
reach the session row even from a terminal that sends version 1.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from server.store.base import StoreBase
from server.store.schema import events, queue_calls

#: How long before a session opened its call may have been made (a terminal's clock
#: against the queue system's, and a citizen walking to the window).
CALL_MATCH_MS = 15 * 60_000

#: The call's fields a session row takes.
CALL_FIELDS = ("call_id", "matter_code", "matter_name", "priority_category", "case_number")


def call_cmd_id(call_id: str) -> uuid.UUID:
    """The command id a call is sent to its terminal under: the same for every retry, so
    the terminal's reply names the call."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"warmwindow:queue:{call_id}")


class Calls(StoreBase):
    def add_call(self, row: dict[str, Any]) -> bool:
        """Store one call; False when its ``call_id`` is stored already (nothing new)."""
        with self.engine.begin() as conn:
            ins = self._insert(queue_calls).values(**row)
            got = conn.execute(
                ins.on_conflict_do_nothing(index_elements=["call_id"]).returning(
                    queue_calls.c.call_id
                )
            ).first()
        return got is not None

    def call(self, call_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(queue_calls).where(queue_calls.c.call_id == call_id)).first()
        return dict(r._mapping) if r is not None else None

    def mark_call_sent(self, call_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                queue_calls.update().where(queue_calls.c.call_id == call_id).values(sent=True)
            )


def _from_opened(conn: Any, rows: Sequence[dict[str, Any]]) -> None:
    """A version 1 summary has no ticket or source: its ``session_opened`` has them."""
    bare = {r["session_id"]: r for r in rows if r.get("ticket") is None and r.get("source") is None}
    if not bare:
        return
    q = select(events.c.session_id, events.c.payload).where(
        events.c.session_id.in_(list(bare)), events.c.kind == "session_opened"
    )
    for sid, payload in conn.execute(q):
        row = bare.get(sid)
        if row is None:
            continue
        doc = payload if isinstance(payload, dict) else json.loads(payload)
        row["source"] = doc.get("source")
        row["ticket"] = doc.get("ticket")
        for name in CALL_FIELDS:
            if row.get(name) is None and doc.get(name) is not None:
                row[name] = doc[name]


def call_fields(conn: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Fill in, on session rows (in place), what the session's opening said (ticket,
    source) when the summary did not, and the fields of the queue call it belongs to: by
    its call id, else by window, ticket and time (the latest such call made before the
    session opened, within ``CALL_MATCH_MS``). What the terminal sent wins."""
    _from_opened(conn, rows)
    wanted = [r for r in rows if r.get("call_id") or r.get("ticket")]
    if not wanted:
        return
    sites = {r["site"] for r in wanted}
    lo = min(r["opened_ms"] for r in wanted) - CALL_MATCH_MS
    hi = max(r["opened_ms"] for r in wanted) + 60_000
    q = select(queue_calls).where(
        queue_calls.c.site.in_(sites),
        queue_calls.c.called_ms >= lo,
        queue_calls.c.called_ms <= hi,
    )
    calls = [dict(c._mapping) for c in conn.execute(q)]
    by_id = {c["call_id"]: c for c in calls}
    for row in wanted:
        call = by_id.get(row["call_id"]) if row.get("call_id") else None
        if call is None and row.get("ticket"):
            near = [
                c
                for c in calls
                if c["site"] == row["site"]
                and c["window"] == row["window"]
                and c["ticket"] == row["ticket"]
                and row["opened_ms"] - CALL_MATCH_MS <= c["called_ms"] <= row["opened_ms"] + 60_000
            ]
            call = max(near, key=lambda c: c["called_ms"]) if near else None
        if call is None:
            continue
        for name in CALL_FIELDS:
            if row.get(name) is None:
                row[name] = call[name]
        if row.get("priority_category") is not None:
            row["priority"] = True
