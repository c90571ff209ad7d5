"""Fixtures of the aggregator's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_site
from server.store.db import Store
from tests.conftest import EXAMPLE_SITE


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store with the example site registered, on SQLite and on PostgreSQL."""
    url = (
        f"sqlite:///{tmp_path / 'ww.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    s = Store(url)
    s.create()
    s.register_site(load_site(EXAMPLE_SITE))
    yield s
    s.close()
