"""An outbound hook (evaluation forwarding, alert push) runs in the ingest transaction;
its failure must never cost the batch its events: the ingest would take the batch for
poison and set the messages aside. An outage still fails the batch, to be retried."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from server.store.db import Store, StoredEvent
from tests.server.test_access_matrix import NOV, SiteEvents


def bad_reviews(n: int) -> list[StoredEvent]:
    se = SiteEvents("qingpu")
    for i in range(n):
        se.bad_review(NOV + i * 600_000)
    return [StoredEvent(e, e.ts_ms) for e in se.events]


def test_a_failing_hook_is_counted_and_the_batch_stored(store: Store) -> None:
    seen: list[int] = []

    def broken(conn: Any, inserted: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        seen.append(len(inserted.get("evaluations", [])))
        raise ValueError("a bug in a mapping")

    store.outbound_hooks = (broken,)
    evs = bad_reviews(3)
    assert len(store.insert_events(evs)) == 6
    assert seen == [3] and store.outbound_hook_failures == 1
    assert store.event_count() == 6 and len(store.list_cases("open")) == 3
    store.raise_alerts([])  # the sweep's minute: the hook fails again, nothing lost
    assert store.outbound_hook_failures == 2


def test_an_outage_in_a_hook_fails_the_batch_to_be_retried(store: Store) -> None:
    def down(conn: Any, inserted: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        raise sa_exc.OperationalError("INSERT ...", {}, Exception("database is locked"))

    store.outbound_hooks = (down,)
    with pytest.raises(sa_exc.OperationalError):
        store.insert_events(bad_reviews(1))
    assert store.event_count() == 0 and store.outbound_hook_failures == 0
