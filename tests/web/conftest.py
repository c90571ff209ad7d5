"""A live aggregator (uvicorn + real Mosquitto + SQLite) and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from agent.localbroker import MosquittoBroker, free_port, wait_port
from server.api.app import ServerSettings, create_app
from server.ingest import IngestSettings
from tests.conftest import EXAMPLE_SITE

CHROMIUM = os.environ.get("WW_CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium spends its start-up on a closed network (see README).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class LiveServer:
    url: str
    app: Any
    broker: MosquittoBroker


@pytest.fixture
def live(broker: MosquittoBroker, tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'web.db'}",
        sites=[EXAMPLE_SITE],
        mqtt=IngestSettings(port=broker.port, client_id="ww-web-test"),
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port("127.0.0.1", port, timeout=20)
    app.state.ingest.wait_connected()
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, broker)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM) and not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is required for browser tests: {CHROMIUM} (apt install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
