"""``warmwindow helpdesk push`` against a live aggregator (uvicorn on a real port, SQLite
and PostgreSQL) with real service tokens: what is stored, what is refused and named, the
retries on 5xx and timeouts, and that a repeated push keeps one row per window and day."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from agent.cli import main
from agent.localbroker import free_port, wait_port
from server.api.app import ServerSettings, create_app
from server.helpdesk_feed import Backoff, FeedFileError, push, read_export
from server.store.db import Store
from server.store.schema import audit_log, helpdesk_kpis
from server.tokens import Tokens
from tests.conftest import EXAMPLE_SITE

HEADER = "site,window,day,requests,first_response_within_1min,resolved\n"
DAY1 = "qingpu,w11,2026-12-01,40,40,37\nqingpu,w12,2026-12-01,25,24,23\n"
DAY2 = "qingpu,w11,2026-12-02,30,30,27\n"


@dataclass
class Live:
    url: str
    store: Store
    tokens: Tokens
    tmp: Path

    def token(self, scope: str, *grants: str) -> Path:
        _, value = self.tokens.create("helpdesk-feed", scope, list(grants), "test")
        f = self.tmp / f"token-{len(list(self.tmp.glob('token-*')))}"
        f.write_text(value + "\n")
        return f

    def rows(self) -> list[tuple[Any, ...]]:
        h = helpdesk_kpis
        q = select(h.c.site, h.c.window, h.c.day, h.c.requests, h.c.resolved).order_by(
            h.c.window, h.c.day
        )
        with self.store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q)]


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    url = (
        f"sqlite:///{tmp_path / 'ww.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    app = create_app(ServerSettings(db_url=url, sites=[EXAMPLE_SITE], mqtt=None))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port("127.0.0.1", port, timeout=20)
    try:
        yield Live(f"http://127.0.0.1:{port}", app.state.store, app.state.tokens, tmp_path)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def csv_file(tmp: Path, text: str, name: str = "export.csv") -> Path:
    f = tmp / name
    f.write_text(text, encoding="utf-8")
    return f


def cli(live: Live, token: Path, export: Path) -> int:
    return main(
        ["helpdesk", "push", "--url", live.url, "--token-file", str(token), "--csv", str(export)]
    )


def test_a_repeated_push_stores_one_row_per_window_and_day(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    token = live.token("site:qingpu", "kpis")
    export = csv_file(live.tmp, "\ufeff" + HEADER + DAY1 + DAY2)  # a spreadsheet's BOM
    assert cli(live, token, export) == 0
    out = capsys.readouterr().out
    assert "sent line 2 (qingpu/w11 2026-12-01): 40 requests, 40 answered within 1 min " in out
    assert "3 of 3 rows stored, 0 refused, 0 retries" in out
    # the help-desk system corrected w12's day: the same file, sent again, replaces it
    corrected = csv_file(live.tmp, HEADER + DAY1.replace("25,24,23", "26,24,25") + DAY2)
    assert cli(live, token, corrected) == 0
    assert cli(live, token, corrected) == 0
    assert live.rows() == [
        ("qingpu", "w11", "2026-12-01", 40, 37),
        ("qingpu", "w11", "2026-12-02", 30, 27),
        ("qingpu", "w12", "2026-12-01", 26, 25),
    ]
    with live.store.engine.connect() as conn:
        audited = conn.execute(
            select(func.count()).where(audit_log.c.action == "helpdesk_kpis")
        ).scalar_one()
    assert audited == 9  # each push of each row is on the record
    summary = live.store.helpdesk_summary("2026-12-01", "2026-12-31", frozenset({"qingpu"}))
    assert summary["requests"] == 96 and len(summary["days"]) == 3
    assert summary["meets_standard"] is False  # w12 answered 24 of 26 within the minute


def test_a_token_without_the_grant_is_refused_and_named(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    export = csv_file(live.tmp, HEADER + DAY1)
    assert cli(live, live.token("site:qingpu", "read"), export) == 1
    out = capsys.readouterr().out
    assert "refused line 2 (qingpu/w11 2026-12-01): refused 403: " in out
    assert "refused line 3 (qingpu/w12 2026-12-01): refused 403: " in out
    assert "0 of 2 rows stored, 2 refused" in out
    assert live.rows() == []


def test_a_token_of_another_centre_is_refused(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    for scope in ("site:xuhui", "district:徐汇区"):
        assert cli(live, live.token(scope, "kpis"), csv_file(live.tmp, HEADER + DAY2)) == 1
        out = capsys.readouterr().out
        assert "refused line 2 (qingpu/w11 2026-12-02): refused 403: outside" in out, out
    assert live.rows() == []


def test_a_revoked_token_stops_the_push_and_a_bad_row_is_named_the_rest_still_go(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    token = live.token("site:qingpu", "kpis")
    text = HEADER + "qingpu,w99,2026-12-01,3,3,3\nqingpu,W 11,2026-12-01,3,3,3\n" + DAY2
    assert cli(live, token, csv_file(live.tmp, text)) == 1
    out = capsys.readouterr().out
    assert "refused line 2 (qingpu/w99 2026-12-01): refused 404: no such window" in out
    assert "refused line 3 (qingpu/W 11 2026-12-01): refused 422: window: " in out
    assert "sent line 4 (qingpu/w11 2026-12-02)" in out
    assert live.rows() == [("qingpu", "w11", "2026-12-02", 30, 27)]

    token_id = token.read_text().split("_")[1]
    live.tokens.revoke(token_id, "test")
    assert cli(live, token, csv_file(live.tmp, HEADER + DAY1)) == 1
    out = capsys.readouterr().out
    assert "stopped at line 2 (qingpu/w11 2026-12-01): refused 401" in out
    assert "0 of 2 rows stored, 0 refused, 0 retries, 2 not sent" in out


def test_a_bad_export_sends_nothing_and_names_the_line(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    token = live.token("site:qingpu", "kpis")
    for text, says in (
        (HEADER + DAY1 + "qingpu,w11,2026-12-02,30,31,27\n", ":4: first_response_within_1min"),
        (HEADER + DAY1 + "qingpu,w11,2026-12-01,1,1,1\n", ":4: qingpu/w11 2026-12-01 again"),
        (HEADER + "qingpu,w11,1.12.2026,1,1,1\n", ":2: day must be YYYY-MM-DD"),
        (HEADER + "qingpu,w11,2026-12-01,-1,0,0\n", ":2: requests cannot be negative"),
        ("site,window,day,requests\n", ":1: header lacks first_response_within_1min, resolved"),
    ):
        export = csv_file(live.tmp, text)
        assert cli(live, token, export) == 2
        out = capsys.readouterr().out
        assert out.startswith(f"nothing sent: {export}{says}"), out
        with pytest.raises(FeedFileError):
            read_export(export)
    assert live.rows() == []


class Flaky(httpx.BaseTransport):
    """The real transport behind a proxy that fails first: answers, then a timeout."""

    def __init__(self, failures: list[int | str]) -> None:
        self.real = httpx.HTTPTransport()
        self.failures = failures
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.failures:
            f = self.failures.pop(0)
            if f == "timeout":
                raise httpx.ReadTimeout("read timed out", request=request)
            return httpx.Response(int(f), json={"detail": "upstream not ready"})
        return self.real.handle_request(request)


def test_5xx_and_timeouts_are_retried_with_capped_backoff(live: Live) -> None:
    token = live.token("site:qingpu", "kpis").read_text().strip()
    rows = read_export(csv_file(live.tmp, HEADER + DAY1))
    flaky = Flaky([503, 502, "timeout", 500, 429])
    waits: list[float] = []
    said: list[str] = []
    with httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {token}"}, transport=flaky
    ) as http:
        report = push(
            rows,
            lambda path, body: http.post(path, json=body),
            backoff=Backoff(first_s=1.0, cap_s=4.0, attempts=6),
            sleep=waits.append,
            say=said.append,
        )
    assert report.ok and len(report.sent) == 2 and report.retries == 5
    assert flaky.requests == 7  # 5 failures, then each row once
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]  # doubling, capped
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), waits
    assert "retry line 2 (qingpu/w11 2026-12-01) in " in said[0] and "503" in said[0]
    assert any("ReadTimeout" in s for s in said)
    assert len(live.rows()) == 2

    # a server that stays down: the push gives up on the row, says so, sends no more
    down = Flaky([503] * 3)
    with httpx.Client(base_url=live.url, transport=down) as http:
        report = push(
            rows,
            lambda path, body: http.post(path, json=body),
            backoff=Backoff(first_s=0.01, cap_s=0.01, attempts=3),
            sleep=lambda s: None,
            say=said.append,
        )
    assert report.stopped is not None and "gave up after 3 tries (503" in report.stopped
    assert down.requests == 3 and not report.sent
