"""Durable outbox: the SQLite queue every conduct event lives in until the broker has it.

``Outbox.add(draft)`` stamps a rules ``Draft`` into a full protocol event (event id,
device sequence number, boot id, site, window), validates it, and stores its JSON in
the one transaction that also advances the persisted sequence counter. The transport
reads rows oldest first with ``peek`` and deletes them with ``ack`` only once the
broker has acknowledged them (QoS 1 PUBACK). Nothing else ever removes a row, except
the disk-cap policy below, which counts every row it removes.

Durability choices, for a Raspberry Pi whose power can be pulled at any moment:

* WAL journal, ``synchronous=FULL``: every commit fsyncs the WAL before ``add``
  returns. With ``NORMAL`` a power cut may roll back the last commits. That loses the
  newest events, and worse, it can roll back the sequence counter after those events
  were already published and acknowledged, so the next event would reuse their ``seq``
  under another ``event_id``. One fsync per event is cheap at the event rate of one
  window (a few a minute); ``ack`` deletes in batches so it costs one fsync per batch.
* The counter lives in its own row (``meta.last_seq``), not ``max(seq)`` of the queue,
  because the queue is empty most of the time.
* An exclusive ``flock`` on ``<path>.lock`` keeps a second agent off the same file; the
  kernel releases it when the holder dies, SIGKILL included.

Disk cap (``max_rows``): when the queue is full, ``add`` still stores the new event and
drops the oldest *summarised* event (``session_opened``, ``stood_up``, ``smiled``: each
outcome they carry is repeated in that session's ``session_summary``); only when none is
left does it drop the oldest event of any kind. Keeping the newest events is deliberate:
a cap is only reached after days offline, when what the centre needs on reconnect is the
recent picture, and the dropped sequence numbers show up as gaps the server can see.
Every drop is counted in ``dropped`` (persisted, so ``Health.dropped`` survives reboots).
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from agent.events import Draft
from agent.protocol import CONTRACT, Contract, Event, now_ms

#: Kinds whose every outcome is repeated in the session's summary: dropped first at the cap.
SUMMARISED_KINDS: Final = ("session_opened", "stood_up", "smiled")
#: About 450 bytes a row: 100,000 rows are ~50 MB of SD card, weeks offline for one window.
DEFAULT_MAX_ROWS: Final = 100_000
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_SCHEMA_VERSION: Final = 1


class OutboxError(RuntimeError):
    """The outbox cannot be used as asked."""


class OutboxLocked(OutboxError):
    """Another process holds this outbox file."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored, not yet acknowledged event."""

    seq: int
    kind: str
    created_ms: int
    payload: str  #: the event's JSON as validated by ``add``


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_age_s: float | None
    dropped: int
    last_seq: int
    max_rows: int


class Outbox:
    """SQLite (WAL) queue of unsent events; thread-safe; one process per file.

    Example::

        with Outbox("/var/lib/warmwindow/outbox.db", site="qingpu", window="w03") as box:
            ev = box.add(Draft(kind=SessionOpened, ts_ms=now_ms(), fields={"source": "bell"}))
            rows = box.peek(10)          # [OutboxRow(seq=ev.seq, ...)]
            box.ack(r.seq for r in rows) # after the broker's PUBACK
    """

    def __init__(
        self,
        path: Path | str,
        site: str,
        window: str,
        boot_id: uuid.UUID | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        clock_ms: Callable[[], int] = now_ms,
        contract: Contract = CONTRACT,
    ) -> None:
        for name, value in (("site", site), ("window", window)):
            if not _SLUG.match(value):
                raise ValueError(f"{name} {value!r} is not a slug")
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.path = Path(path)
        self.site = site
        self.window = window
        self.boot_id = boot_id or uuid.uuid4()
        self.max_rows = max_rows
        self._clock_ms = clock_ms
        self._contract = contract
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_file_lock()
        try:
            self._db = self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        # Cached under self._lock: this process is the only writer (file lock), and a
        # COUNT(*) per add would scan the whole queue.
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self._last_seq = self._meta("last_seq")
        self._dropped = self._meta("dropped")
        self._closed = False

    # ------------------------------------------------------------------ opening

    def _take_file_lock(self) -> int:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxLocked(f"{self.path} is in use by another process") from None
        return fd

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are spelled out below (BEGIN IMMEDIATE), so
        # the module never opens one behind our back. check_same_thread=False because the
        # app thread adds while the transport thread peeks and acks; self._lock serialises.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            db.close()
            raise OutboxError(f"{self.path}: cannot use WAL journal (got {mode!r})")
        db.execute("PRAGMA synchronous=FULL")  # why FULL: see the module docstring
        # Keep the WAL file from staying large on the SD card after a long outage.
        db.execute("PRAGMA journal_size_limit=4194304")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, _SCHEMA_VERSION):
            db.close()
            raise OutboxError(f"{self.path}: unknown outbox schema version {version}")
        if version == 0:
            kinds = ", ".join(f"'{k}'" for k in SUMMARISED_KINDS)
            db.executescript(
                f"""
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS meta (
                    key TEXT PRIMARY KEY, value INTEGER NOT NULL
                ) WITHOUT ROWID;
                INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('dropped', 0);
                CREATE TABLE IF NOT EXISTS outbox (
                    seq INTEGER PRIMARY KEY,
                    kind TEXT NOT NULL,
                    created_ms INTEGER NOT NULL,
                    payload TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS outbox_summarised
                    ON outbox(seq) WHERE kind IN ({kinds});
                PRAGMA user_version = {_SCHEMA_VERSION};
                COMMIT;
                """
            )
        return db

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    # ------------------------------------------------------------------ writing

    def add(self, draft: Draft) -> Event:
        """Stamp, validate and store one event; return it as sent (minus sent_ms/historical).

        Raises ``pydantic.ValidationError`` for a draft that is not a valid event, and
        then consumes no sequence number.
        """
        # The newest version of the draft's kind: the outbox keeps the newest form, and
        # the transport sends each ingest the version it accepts (agent/protocol.py).
        model = self._contract.model_for(draft.kind)
        # Validate outside the lock with a placeholder seq; the real one is set under the
        # lock with model_copy (seq is a plain positive int, nothing left to validate).
        template = model.model_validate(
            {
                **draft.fields,
                "event_id": uuid.uuid4(),
                "site": self.site,
                "window": self.window,
                "seq": 1,
                "boot_id": self.boot_id,
                "ts_ms": draft.ts_ms,
                "session_id": draft.session_id,
                "clauses": draft.clauses,
            }
        )
        kind = str(model.model_fields["kind"].default)  # every event kind has its literal
        unset = self._contract.optional_unset(template)
        with self._lock:
            self._check_open()
            seq = self._last_seq + 1
            event = template.model_copy(update={"seq": seq})
            created = self._clock_ms()
            dropped_now = 0
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if self._depth >= self.max_rows:
                    dropped_now = self._drop_for_room(self._depth - self.max_rows + 1)
                db.execute(
                    "INSERT INTO outbox (seq, kind, created_ms, payload) VALUES (?, ?, ?, ?)",
                    (seq, kind, created, event.model_dump_json(exclude=unset)),
                )
                db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))
                if dropped_now:
                    db.execute(
                        "UPDATE meta SET value = ? WHERE key = 'dropped'",
                        (self._dropped + dropped_now,),
                    )
                db.execute("COMMIT")
            except BaseException:
                # A full disk can end the transaction itself; ROLLBACK would then raise
                # "no transaction is active" and hide the real error.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            # Only after COMMIT: a failed transaction leaves the cached counters untouched.
            self._last_seq = seq
            self._depth += 1 - dropped_now
            self._dropped += dropped_now
        return cast(Event, event)

    def _drop_for_room(self, n: int) -> int:
        """Delete n rows by the cap policy (inside the caller's transaction)."""
        kinds = ", ".join("?" for _ in SUMMARISED_KINDS)
        victims = [
            int(r[0])
            for r in self._db.execute(
                f"SELECT seq FROM outbox WHERE kind IN ({kinds}) ORDER BY seq LIMIT ?",
                (*SUMMARISED_KINDS, n),
            )
        ]
        if len(victims) < n:
            victims += [
                int(r[0])
                for r in self._db.execute(
                    f"SELECT seq FROM outbox WHERE kind NOT IN ({kinds}) ORDER BY seq LIMIT ?",
                    (*SUMMARISED_KINDS, n - len(victims)),
                )
            ]
        self._db.executemany("DELETE FROM outbox WHERE seq = ?", ((s,) for s in victims))
        return len(victims)

    def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged rows (one transaction, one fsync); return how many existed.

        Unknown seqs are ignored: a row the cap already dropped may still be acked.
        """
        return self._delete("DELETE FROM outbox WHERE seq = ?", [(int(s),) for s in seqs])

    def ack_ranges(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Delete the rows whose seq lies in any inclusive ``(first, last)`` range (one
        transaction, one statement per range: a range may span far more seqs than the
        outbox holds); return how many existed. The aggregator's ``Stored``."""
        batch = [(int(a), int(b)) for a, b in ranges]
        return self._delete("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", batch)

    def _delete(self, sql: str, batch: Sequence[tuple[int, ...]]) -> int:
        """Run one DELETE per parameter tuple in one transaction; how many rows went."""
        if not batch:
            return 0
        with self._lock:
            self._check_open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany(sql, batch)
                deleted = db.total_changes - before
                db.execute("COMMIT")
            except BaseException:
                # A full disk can end the transaction itself; ROLLBACK would then raise
                # "no transaction is active" and hide the real error.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._depth -= deleted
            return deleted

    # ------------------------------------------------------------------ reading

    def peek(self, n: int, after_seq: int = 0) -> list[OutboxRow]:
        """Up to n unacknowledged rows with seq > after_seq, oldest first."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, kind, created_ms, payload FROM outbox"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, n),
            ).fetchall()
        return [OutboxRow(int(s), str(k), int(c), str(p)) for s, k, c, p in rows]

    @property
    def depth(self) -> int:
        """Rows waiting for an acknowledgement."""
        return self._depth

    @property
    def last_seq(self) -> int:
        """The highest sequence number ever handed out by this file (0 before the first)."""
        return self._last_seq

    @property
    def dropped(self) -> int:
        """Events removed unsent by the disk cap, since the file was created."""
        return self._dropped

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting row, None when empty (clamped at 0 for clock steps)."""
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT created_ms FROM outbox ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        return max(0.0, (self._clock_ms() - int(row[0])) / 1000.0)

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                depth=self._depth,
                oldest_age_s=self.oldest_age_s(),
                dropped=self._dropped,
                last_seq=self._last_seq,
                max_rows=self.max_rows,
            )

    def durability(self) -> tuple[str, str]:
        """(journal mode, synchronous level) in effect, e.g. ("wal", "FULL")."""
        with self._lock:
            self._check_open()
            mode = str(self._db.execute("PRAGMA journal_mode").fetchone()[0])
            level = int(self._db.execute("PRAGMA synchronous").fetchone()[0])
        return mode, ("OFF", "NORMAL", "FULL", "EXTRA")[level]

    # ------------------------------------------------------------------ closing

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"{self.path} is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                # Fold the WAL back into the database so a clean shutdown leaves one file.
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
                os.close(self._lock_fd)  # releases the flock

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
