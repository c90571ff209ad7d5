"""The durable outbound queue: what the server owes other systems, in its own database.

A cause (a stored evaluation, a raised alert) calls ``enqueue`` *in the transaction that
stores it*, so the delivery exists exactly when its cause does: a crash before COMMIT
loses both, one after keeps both, and a replayed event (same key) is not queued again
(one row per target and key, ``ux_outbound_target_key``).

The ``Deliverer`` thread (one per server replica, started and stopped by the app like
the sweep) claims due rows and hands each to its target type's ``Sender``:

* a claim is one ``UPDATE .. WHERE id IN (SELECT .. FOR UPDATE SKIP LOCKED)`` that
  counts the attempt and pushes ``due_ms`` to the end of a lease, then commits; the send
  runs outside any transaction. Replicas therefore never take the same row at once, and
  a replica killed mid-send leaves its rows to come due again when the lease ends:
  delivery is *at least once*, and the key (an ``Idempotency-Key`` header for HTTP) lets
  the receiver drop the repeat;
* the outcome is written only while the row is still the claim's (same ``attempts``),
  so a late answer after a lease ran out cannot undo another replica's result;
* ``Retry`` (time-outs, 5xx, 429, dropped connections) waits a capped exponential
  backoff with jitter (``backoff_ms``); ``Permanent`` (other 4xx, a refused address) or
  the target's ``max_attempts`` spent makes the row dead; ``resend`` makes a dead row
  pending again (the API audits who did it).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, and_, exists, false, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from server.outbound.targets import OutboundConfig, Target
from server.store.schema import outbound_deliveries as od
from server.store.schema import outbound_status, outbound_switches

log = logging.getLogger(__name__)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
#: Rows one claim takes.
CLAIM_BATCH = 50


class Retry(Exception):
    """The target may take it later: time-out, 5xx, 429, a dropped connection."""


class Permanent(Exception):
    """The target will never take it as it is: a 4xx other than 408/429, a refused address."""


class Sender(Protocol):
    def send(self, target: Target, body: Mapping[str, Any], key: str) -> None:
        """Deliver ``body`` (idempotent under ``key``); raise ``Retry`` or ``Permanent``."""
        ...


def backoff_ms(attempts: int, base_ms: int, cap_ms: int, jitter: float) -> int:
    """The wait after the ``attempts``-th failed try: ``base * 2**(attempts-1)`` capped at
    ``cap``, times ``jitter`` in [0.5, 1] so replicas and targets do not retry in step.

    >>> [backoff_ms(n, 1000, 8000, 1.0) for n in (1, 2, 3, 4, 5)]
    [1000, 2000, 4000, 8000, 8000]
    >>> backoff_ms(3, 1000, 8000, 0.5)
    2000
    """
    jitter = min(1.0, max(0.5, jitter))
    return int(min(cap_ms, base_ms * 2 ** min(max(attempts - 1, 0), 40)) * jitter)


def _insert(conn: Any) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def delivery_row(
    *, target: str, key: str, kind: str, body: dict[str, Any], at_ms: int, site: str | None
) -> dict[str, Any]:
    return {
        "target": target,
        "key": key,
        "kind": kind,
        "site": site,
        "body": body,
        "status": PENDING,
        "attempts": 0,
        "created_ms": at_ms,
        "due_ms": at_ms,
    }


def enqueue_many(conn: Any, rows: Sequence[Mapping[str, Any]]) -> int:
    """Queue ``delivery_row``s in one statement, skipping (target, key) pairs already
    queued; return how many were new. Call it in the cause's transaction."""
    if not rows:
        return 0
    stmt = (
        _insert(conn)(od)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["target", "key"])
        .returning(od.c.id)
    )
    return len(conn.execute(stmt).all())


def enqueue(
    conn: Any,
    *,
    target: str,
    key: str,
    kind: str,
    body: dict[str, Any],
    at_ms: int,
    site: str | None = None,
) -> bool:
    """Queue one delivery; False when ``key`` is already queued for ``target``."""
    row = delivery_row(target=target, key=key, kind=kind, body=body, at_ms=at_ms, site=site)
    return enqueue_many(conn, [row]) == 1


def resend(conn: Any, delivery_id: int, by: str, at_ms: int) -> dict[str, Any] | None:
    """Make a dead delivery pending again, due now, its attempts counted afresh; return
    the row as it was (None when there is no such dead delivery). ``by`` is for the
    caller's audit entry (server/api/access.py writes it in this transaction)."""
    row = conn.execute(select(od).where(od.c.id == delivery_id, od.c.status == DEAD)).first()
    if row is None:
        return None
    conn.execute(
        update(od)
        .where(od.c.id == delivery_id, od.c.status == DEAD)
        .values(status=PENDING, attempts=0, due_ms=at_ms, last_error=f"resent by {by}")
    )
    return dict(row._mapping)


@dataclass(frozen=True)
class Claimed:
    id: int
    target: str
    key: str
    kind: str
    site: str | None
    body: dict[str, Any]
    attempts: int


def claim(
    conn: Any, targets: Sequence[str], now: int, lease_ms: int, limit: int = CLAIM_BATCH
) -> list[Claimed]:
    """Take up to ``limit`` due rows of ``targets`` for ``lease_ms`` (rows another
    replica holds are skipped; a unit's switched-off target waits)."""
    if not targets:
        return []
    switched_off = exists().where(
        outbound_switches.c.target == od.c.target,
        outbound_switches.c.site == od.c.site,
        outbound_switches.c.enabled == false(),
    )
    due = (
        select(od.c.id)
        .where(
            od.c.status == PENDING,
            od.c.due_ms <= now,
            od.c.target.in_(list(targets)),
            ~switched_off,
        )
        .order_by(od.c.due_ms, od.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(od)
        .where(od.c.id.in_(due.scalar_subquery()))
        .values(due_ms=now + lease_ms, attempts=od.c.attempts + 1, last_attempt_ms=now)
        .returning(od.c.id, od.c.target, od.c.key, od.c.kind, od.c.site, od.c.body, od.c.attempts)
    )
    rows = [Claimed(**r._mapping) for r in conn.execute(stmt)]
    return sorted(rows, key=lambda c: c.id)


def switch(conn: Any, target: str, site: str, enabled: bool, by: str, at_ms: int) -> bool:
    """Switch ``target`` on or off for ``site`` (``claim`` skips its rows while off);
    return whether it was on before."""
    sw = outbound_switches.c
    was = conn.execute(select(sw.enabled).where(sw.target == target, sw.site == site)).scalar()
    values = {"enabled": enabled, "by": by, "at_ms": at_ms}
    ins = _insert(conn)(outbound_switches).values(target=target, site=site, **values)
    conn.execute(ins.on_conflict_do_update(index_elements=["target", "site"], set_=values))
    return True if was is None else bool(was)


def _note_status(conn: Any, target: str, now: int, error: str | None) -> None:
    values: dict[str, Any] = (
        {"last_success_ms": now} if error is None else {"last_error_ms": now, "last_error": error}
    )
    ins = _insert(conn)(outbound_status).values(target=target, **values)
    conn.execute(ins.on_conflict_do_update(index_elements=["target"], set_=values))


def settle(
    conn: Any,
    c: Claimed,
    now: int,
    *,
    error: str | None = None,
    dead: bool = False,
    retry_ms: int = 0,
) -> bool:
    """Write a claimed row's outcome (delivered when ``error`` is None); False when the
    row is no longer this claim's (its lease ran out and another took it)."""
    mine = and_(od.c.id == c.id, od.c.attempts == c.attempts, od.c.status == PENDING)
    if error is None:
        values: dict[str, Any] = {"status": DELIVERED, "delivered_ms": now, "last_error": None}
    elif dead:
        values = {"status": DEAD, "last_error": error[:500]}
    else:
        values = {"due_ms": now + retry_ms, "last_error": error[:500]}
    changed = conn.execute(update(od).where(mine).values(**values)).rowcount == 1
    _note_status(conn, c.target, now, None if error is None else error[:500])
    return changed


def counts(conn: Any, sites: frozenset[str] | None = None) -> dict[str, Counter[str]]:
    """Per target, its rows by status (within ``sites`` when given)."""
    q = select(od.c.target, od.c.status, func.count()).group_by(od.c.target, od.c.status)
    if sites is not None:
        q = q.where(od.c.site.in_(sorted(sites)))
    out: dict[str, Counter[str]] = {}
    for target, status, n in conn.execute(q):
        out.setdefault(target, Counter())[status] = n
    return out


def dead_rows(conn: Any, sites: frozenset[str] | None, limit: int = 200) -> list[dict[str, Any]]:
    """The dead deliveries, newest first (within ``sites`` when given); bodies left out."""
    q = (
        select(
            od.c.id,
            od.c.target,
            od.c.key,
            od.c.kind,
            od.c.site,
            od.c.attempts,
            od.c.created_ms,
            od.c.last_attempt_ms,
            od.c.last_error,
        )
        .where(od.c.status == DEAD)
        .order_by(od.c.id.desc())
        .limit(limit)
    )
    if sites is not None:
        q = q.where(od.c.site.in_(sorted(sites)))
    return [dict(r._mapping) for r in conn.execute(q)]


class Deliverer:
    """Claims due deliveries and sends them, until ``stop()``.

    >>> from server.store.db import Store
    >>> from server.outbound.targets import OFF
    >>> store = Store("sqlite://"); store.create()
    >>> d = Deliverer(store.engine, OFF, {})
    >>> d.run_once()
    0
    >>> store.close()
    """

    def __init__(
        self,
        engine: Engine,
        config: OutboundConfig,
        senders: Mapping[str, Sender],
        *,
        lease_s: float | None = None,
        prepare: Callable[[Any, list[Claimed]], list[Claimed]] | None = None,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.config = config
        self.senders = dict(senders)
        slowest = max((t.timeout_s for t in config.targets.values()), default=10.0)
        self.lease_ms = int((lease_s if lease_s is not None else config.lease_s) * 1000)
        self.lease_ms = max(self.lease_ms, int(slowest * 1000) + 1000)
        self._clock = clock
        #: In the claim's transaction, what completes a claimed body (evaluations.complete).
        self._prepare = prepare
        self._rand = rand
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: Since this process started, per target: delivered, retried, dead (Prometheus).
        self.counters: dict[str, Counter[str]] = {t: Counter() for t in config.targets}

    def _sendable(self) -> list[str]:
        return [
            t.name for t in self.config.targets.values() if t.enabled and t.type in self.senders
        ]

    def run_once(self) -> int:
        """Claim once and send what was claimed; return how many were tried."""
        names = self._sendable()
        if not names:
            return 0
        with self.engine.begin() as conn:
            got = claim(conn, names, self._clock(), self.lease_ms)
            if got and self._prepare is not None:
                got = self._prepare(conn, got)
        for c in got:
            if self._stop.is_set():
                break  # the rest come due again when their lease ends
            self._deliver(c)
        return len(got)

    def _deliver(self, c: Claimed) -> None:
        target = self.config.targets[c.target]
        error: str | None = None
        dead = False
        try:
            self.senders[target.type].send(target, c.body, c.key)
        except Permanent as exc:
            error, dead = f"refused: {exc}", True
        except Retry as exc:
            error = str(exc) or "retry"
        except Exception as exc:  # a sender's bug must not stop the others' deliveries
            log.exception("outbound sender %s failed on %s", target.type, c.key)
            error = f"{type(exc).__name__}: {exc}"
        dead = dead or (error is not None and c.attempts >= target.max_attempts)
        wait = backoff_ms(
            c.attempts,
            int(self.config.backoff_s * 1000),
            int(self.config.backoff_cap_s * 1000),
            0.5 + self._rand() / 2,
        )
        now = self._clock()
        with self.engine.begin() as conn:
            settle(conn, c, now, error=error, dead=dead, retry_ms=wait)
        outcome = "delivered" if error is None else ("dead" if dead else "retried")
        self.counters.setdefault(c.target, Counter())[outcome] += 1
        if error is not None:
            log.warning("outbound %s %s to %s: %s", c.kind, outcome, c.target, error)

    def wake(self) -> None:
        """Look at the queue now (something was just enqueued)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                tried = self.run_once()
            except Exception:
                log.exception("outbound queue unavailable; retrying")
                tried = 0
            if not tried:
                self._wake.wait(self.config.poll_s)
                self._wake.clear()

    def start(self) -> None:
        if self._thread is None and self._sendable():
            self._thread = threading.Thread(target=self._loop, name="outbound", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
