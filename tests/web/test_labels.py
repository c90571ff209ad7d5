"""Every label in the chosen language: the hall's latest events name their kind, phase
and suspect reason in Chinese (the default) or English, never as raw wire names."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent import protocol as p
from server.store.db import StoredEvent
from tests.server.test_measures import Fleet
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login

RAW = ("session_summary", "stood_up", "smiled", "evaluated", "greeting", "already_evaluated")


def test_the_latest_events_speak_the_chosen_language(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("mgr", "mgr-pass-1", "centre_manager", "site:qingpu", "张经理")
    now = int(time.time() * 1000)
    f = Fleet()
    summary = f.session("w03", now - 400_000)
    sid = summary.session_id
    f.events += [
        p.StoodUp(**f.header("w03", now - 398_000, sid), phase="greeting", on_time=True,
                  after_ms=1500),
        p.Evaluated(**f.header("w03", now - 90_000, sid), rating=p.Rating.SATISFIED,
                    suspect=True, suspect_reason="already_evaluated"),
    ]  # fmt: skip
    store.insert_events([StoredEvent(e, now) for e in f.events])

    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "mgr", "mgr-pass-1")
    page.goto(f"{live.url}/#/hall")
    page.wait_for_selector('#latest tr[data-kind="stood_up"]')
    zh = page.locator("#latest").inner_text()
    assert "起立" in zh and "迎客" in zh and "服务小结" in zh and "存疑: 已评价" in zh, zh
    assert not any(raw in zh for raw in RAW), zh
    page.click("#lang")
    page.wait_for_selector('#latest tr[data-kind="stood_up"]')
    en = page.locator("#latest").inner_text()
    assert "stood up" in en and "session summary" in en and "suspect: already evaluated" in en
    assert not any("_" in raw and raw in en for raw in RAW), en  # English words may match
    ctx.close()
