"""The engine every part of the store shares, and the dialect-aware insert helpers.

Same code on SQLite (default, one file) and PostgreSQL (production).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Table, TextClause, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        return engine
    # JIT compilation costs PostgreSQL hundreds of ms on the dashboard's aggregate
    # queries and saves nothing at their size (measured on the 10M-event bench).
    return create_engine(url, pool_pre_ping=True, connect_args={"options": "-c jit=off"})


@functools.cache
def _sqlite_insert_new(table: Table, key: str) -> Any:
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])


@functools.cache
def _pg_recordset_insert(table: Table, columns: tuple[str, ...], key: str) -> TextClause:
    """``INSERT .. SELECT FROM json_populate_recordset(rows) ON CONFLICT DO NOTHING``.

    A multi-row VALUES list has a new text for every batch size, so SQLAlchemy and psycopg
    render and parse it anew each time, and per-column arrays are escaped element by
    element in Python: each cost about half the CPU of an ingest batch (py-spy on
    bench.ingest). One JSON document per batch is encoded in C and parsed by PostgreSQL,
    and the statement text never changes."""
    cols = ", ".join(f'"{c}"' for c in columns)
    return text(
        f"INSERT INTO {table.name} ({cols}) SELECT {cols}"
        f" FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json))"
        f' ON CONFLICT ("{key}") DO NOTHING RETURNING "{key}"'
    )


def is_outage(exc: BaseException) -> bool:
    """The store cannot be reached or cannot write now (down, restarting, locked, out of
    disk, a deadlock): retry as is. Anything else may be one message's fault."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc, (sa_exc.OperationalError, sa_exc.DisconnectionError, sa_exc.TimeoutError)
    )


class StoreBase:
    """The engine, its dialect and the sites' time zones the store's parts share."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._dialect = self.engine.dialect.name
        self._tz: dict[str, str] = {}
        #: Outbound hooks that raised (their deliveries not queued; logged each time).
        self.outbound_hook_failures = 0

    def _run_hooks(self, conn: Any, hooks: Sequence[Any], inserted: Mapping[str, Any]) -> None:
        """Run the outbound hooks in the caller's transaction, each in a savepoint: a hook
        that fails never costs the batch its events (the ingest would take the batch for
        poison and set its messages aside). An outage still fails the batch, to be retried
        whole; any other failure is logged and counted, and the batch goes in."""
        for hook in hooks:
            try:
                with conn.begin_nested():
                    hook(conn, inserted)
            except Exception as exc:
                if is_outage(exc):
                    raise
                self.outbound_hook_failures += 1
                log.exception("an outbound hook failed; the batch is stored without it")

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        return (postgresql if self._dialect == "postgresql" else sqlite).insert(table)

    def _insert_new(
        self, conn: Any, table: Table, rows: Sequence[Mapping[str, Any]], key: str
    ) -> list[Any]:
        """Insert rows, skipping any whose ``key`` exists; return the keys inserted."""
        if self._dialect != "postgresql":
            return [r[0] for r in conn.execute(_sqlite_insert_new(table, key), rows)]
        stmt = _pg_recordset_insert(table, tuple(rows[0]), key)
        return [r[0] for r in conn.execute(stmt, {"rows": json.dumps(rows)})]
