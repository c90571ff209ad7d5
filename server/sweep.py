"""The one scheduled job: every minute, raise what the clock has made due.

``run_once(store, now_ms)`` reads the open cases, the terminals and each window's
sessions of the look-back (how many had a verdict not observed), asks
``server.policy.clock`` what is due at ``now_ms`` and inserts those alerts; ids already
held are skipped, so a second run (or a second replica) raises nothing twice.
``Sweeper`` runs it on a thread of its own until stopped::

    with Sweeper(store):
        ...  # serve

A failed sweep (the database down) is logged and tried again at the next minute.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from agent.protocol import now_ms
from server.policy.clock import (
    SILENT_AFTER_MS,
    NotObservedLimits,
    OpenCase,
    Terminal,
    WindowView,
    due,
)
from server.policy.rows import AlertRow
from server.store.db import Store

log = logging.getLogger(__name__)


def run_once(
    store: Store,
    now_ms: int,
    *,
    silent_after_ms: int = SILENT_AFTER_MS,
    not_observed: NotObservedLimits | None = None,
) -> list[AlertRow]:
    """Raise the alerts due at ``now_ms``; return those that were new."""
    limits = not_observed or NotObservedLimits()
    # Provisional due dates (a year no calendar knew) are counted again once it is known.
    store.refresh_provisional_dues()
    cases = [
        OpenCase(
            case_id=c["case_id"],
            site=c["site"],
            window=c["window"],
            due_ms=c["due_ms"],
            status=c["status"],
            clerk_id=c["clerk_id"],
            rating=c["rating"],
        )
        for c in store.list_cases(status="open")
    ]
    terminals = [Terminal(**t) for t in store.terminals()]
    since = now_ms - limits.lookback_ms
    alerts = due(
        now_ms,
        cases,
        terminals,
        silent_after_ms=silent_after_ms,
        views=[WindowView(**v) for v in store.window_views(since, now_ms)],
        recent=store.alerted_windows("not_observed", since),
        limits=limits,
    )
    raised = set(store.raise_alerts(alerts))
    return [a for a in alerts if a["alert_id"] in raised]


class Sweeper:
    """Runs ``run_once`` every ``every_s`` seconds on its own thread.

    The first sweep waits one interval: a server that was down has its broker's queued
    messages to catch up on before a terminal's last-seen time means anything.
    ``on_raised`` receives each sweep's new alerts (the app can publish them live).
    """

    def __init__(
        self,
        store: Store,
        *,
        every_s: float = 60.0,
        silent_after_ms: int = SILENT_AFTER_MS,
        not_observed: NotObservedLimits | None = None,
        clock: Callable[[], int] = now_ms,
        on_raised: Callable[[list[AlertRow]], None] | None = None,
    ) -> None:
        self.store = store
        self.every_s = every_s
        self.silent_after_ms = silent_after_ms
        self.not_observed = not_observed
        self._clock = clock
        self._on_raised = on_raised
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0
        self.failures = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("sweeper already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ww-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Sweeper:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def sweep(self) -> list[AlertRow]:
        """One sweep now (what the thread does every interval)."""
        raised = run_once(
            self.store,
            self._clock(),
            silent_after_ms=self.silent_after_ms,
            not_observed=self.not_observed,
        )
        self.sweeps += 1
        if raised and self._on_raised is not None:
            self._on_raised(raised)
        return raised

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sweep()
            except Exception:
                self.failures += 1
                log.exception("sweep failed; next try in %.0f s", self.every_s)
