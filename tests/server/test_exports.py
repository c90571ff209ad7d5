"""Exports: every table in both formats, formula text neutralised, numbers as numbers,
file names only from checked values; and the security headers on every kind of response."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from agent import protocol as p
from server.api import export
from server.api.app import ServerSettings, create_app
from server.api.security import CSP
from server.api.tabular import content_disposition, flatten, neutralise, to_csv, to_xlsx
from server.store.db import StoredEvent
from tests.conftest import EXAMPLE_SITE
from tests.server.test_api import sign_in
from tests.server.test_measures import DAY, ms, scenario

#: Every table export.py serves (its TABLES): a table added there is exported here too.
TABLES = export.TABLES
#: Text a spreadsheet would run as a formula (or split into a new cell).
FORMULAS = ('=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\tfoo", "\rbar")
ALERT_KINDS = {
    "away_without_sign",
    "conduct",
    "bad_review",
    "fault",
    "sign_while_present",
    "offline",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'x.db'}", sites=[EXAMPLE_SITE], mqtt=None)
    )
    with TestClient(app) as c:
        app.state.accounts.add_user("admin", "admin-pass-1", "district_admin", "district:青浦区")
        sign_in(c, "admin", "admin-pass-1")
        yield c


def header(f: Any, window: str, ts: int) -> dict[str, Any]:
    return f.header(window, ts, None) | {"event_id": uuid.uuid4()}


def load(c: TestClient) -> dict[str, Any]:
    """The measures scenario plus one of every other alert kind, formula-like text in
    every free-text field (clerk names, ack and case notes, fault detail, model version)."""
    store = c.app.state.store  # type: ignore[attr-defined]
    nov1 = ms(2026, 11, 1, 0, 0)
    for i, name in enumerate(FORMULAS):
        r = c.post("/api/clerks", json={"clerk_id": f"c-{i}", "name": name, "site": "qingpu"})
        assert r.status_code == 201, r.text
    for i, w in enumerate(("w03", "w04", "w05")):
        assert c.post(
            "/api/roster",
            json={"clerk_id": f"c-{i}", "site": "qingpu", "window": w, "start_ms": nov1},
        ).is_success
    f, refs = scenario()
    f.events += [
        p.Fault(**header(f, "w04", DAY + 3_600_000), code="camera_frozen", detail="@SUM(A1)"),
        p.SignWhilePresent(
            **header(f, "w05", DAY + 3_700_000), started_ms=DAY + 3_300_000, duration_ms=400_000
        ),
    ]
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
    store.set_availability("qingpu", "w06", False, DAY + 3_800_000)
    store.set_health(
        p.Health(
            site="qingpu",
            window="w04",
            ts_ms=DAY,
            uptime_s=3600,
            fps=9.5,
            inference_ms=31.0,
            cpu_temp_c=-5.5,  # a cold hall: a negative number, still a number
            outbox_depth=0,
            model_version="=cmd|' /C calc'!A0",
            config_version="-1",
        ),
        DAY,
    )
    alerts = c.get("/api/alerts", params={"site": "qingpu", "limit": 1000}).json()
    assert {a["kind"] for a in alerts} == ALERT_KINDS
    # one note per formula, on alerts of different kinds
    by_kind = {a["kind"]: a for a in alerts}
    for note, kind in zip(FORMULAS, sorted(ALERT_KINDS), strict=True):
        r = c.post(f"/api/alerts/{by_kind[kind]['alert_id']}/ack", json={"note": note})
        assert r.status_code == 200, r.text
    case_id = str(refs["bad_eval"].event_id)
    called = {"at_ms": refs["bad_eval"].ts_ms + 60_000, "outcome": "unreachable"}
    assert c.post(f"/api/cases/{case_id}/callback", json=called).status_code == 200
    assert c.post(f"/api/cases/{case_id}/rectification", json={"note": "x"}).status_code == 200
    r = c.post(f"/api/cases/{case_id}/close", json={"note": FORMULAS[0]})
    assert r.json() == {"closed": True}
    return refs


def get(c: TestClient, name: str, fmt: str, **params: str) -> Any:
    return c.get(f"/api/export/{name}.{fmt}", params={"period": "2026-11", **params})


def csv_rows(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


def xlsx_rows(body: bytes) -> list[dict[str, Any]]:
    ws = load_workbook(io.BytesIO(body)).active
    assert ws is not None
    values = list(ws.iter_rows(values_only=True))
    cols = [str(x) for x in values[0]]
    return [dict(zip(cols, r, strict=True)) for r in values[1:]]


def test_every_table_in_both_formats(client: TestClient) -> None:
    load(client)
    expect = {
        "sessions": 43,
        "measures_by_window": 3,
        "measures_by_clerk": 3,  # the three signed-in clerks
        "ranking": 3,
        "alerts": None,
        "cases": 1,
        "fleet": 12,
        "assessment": len(FORMULAS),
    }
    for name in TABLES:
        for fmt in ("csv", "xlsx"):
            r = get(client, name, fmt, site="qingpu")
            assert r.status_code == 200, (name, fmt, r.text)
            assert r.headers["content-disposition"] == (
                f'attachment; filename="warmwindow-{name}-qingpu-2026-11.{fmt}"'
            )
            rows = csv_rows(r.content) if fmt == "csv" else xlsx_rows(r.content)
            if expect[name] is not None:
                assert len(rows) == expect[name], (name, fmt)
            if name == "alerts":
                assert {x["kind"] for x in rows} == ALERT_KINDS, fmt
                misses = {x["detail.misses"] for x in rows if x["kind"] == "conduct"}
                assert "stand_on_call; smile_at_greeting; stand_at_farewell" in misses, fmt
    assert get(client, "nope", "csv").status_code == 404
    assert get(client, "alerts", "pdf").status_code == 422


def number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_formulas_neutralised_and_numbers_stay_numbers(client: TestClient) -> None:
    load(client)
    quoted = {"'" + f for f in FORMULAS}
    seen_csv: set[str] = set()
    seen_xlsx: set[str] = set()
    for name in ("assessment", "alerts", "cases", "fleet"):
        text_rows = csv_rows(get(client, name, "csv", site="qingpu").content)
        book_rows = xlsx_rows(get(client, name, "xlsx", site="qingpu").content)
        for row in text_rows:
            for v in row.values():
                assert not v.startswith(("=", "+", "-", "@", "\t", "\r")) or number(v), (name, v)
                seen_csv.add(v)
        for row in book_rows:
            for v in row.values():
                if isinstance(v, str):
                    assert not v.startswith(("=", "+", "-", "@", "\t", "\r")), (name, v)
                    seen_xlsx.add(v)
    assert quoted <= seen_csv
    # XML reads a bare CR back as LF; the cell still starts with the quote
    assert {q.replace("\r", "\n") for q in quoted} <= seen_xlsx
    assert "'@SUM(A1)" in seen_xlsx  # the fault's detail text from a device
    assert "'=cmd|' /C calc'!A0" in seen_xlsx and "'-1" in seen_xlsx

    # numbers are numbers in the workbook: ints, floats, a negative one too
    fleet = {r["window"]: r for r in xlsx_rows(get(client, "fleet", "xlsx").content)}
    assert fleet["w04"]["cpu_temp_c"] == -5.5 and isinstance(fleet["w04"]["cpu_temp_c"], float)
    assert isinstance(fleet["w04"]["uptime_s"], int) and fleet["w04"]["uptime_s"] == 3600
    assert fleet["w04"]["model_version"] == "'=cmd|' /C calc'!A0"
    m = xlsx_rows(get(client, "measures_by_window", "xlsx", site="qingpu").content)
    w03 = next(r for r in m if r["group"] == "qingpu/w03")
    assert w03["sessions"] == 10 and isinstance(w03["sessions"], int)
    assert w03["good_review_rate"] == 0.875
    sessions = xlsx_rows(get(client, "sessions", "xlsx", site="qingpu").content)
    assert all(isinstance(r["opened_ms"], int) for r in sessions)
    assert all(isinstance(r["closed_ms"], int) for r in sessions)
    assert isinstance(fleet["w06"]["online"], bool) and fleet["w06"]["online"] is False
    # in the CSV a negative number is written as a number (no quote)
    text = {r["window"]: r for r in csv_rows(get(client, "fleet", "csv").content)}
    assert text["w04"]["cpu_temp_c"] == "-5.5"


def refused(r: Any, text: str) -> None:
    """422 from the export's own checks; a control character may already be turned away
    with 400 by the guard in front of every route. Never a download either way."""
    control = any(ord(ch) < 0x20 for ch in text)
    assert r.status_code in ((400, 422) if control else (422,)), (text, r.status_code)
    assert "content-disposition" not in r.headers and "x" not in r.cookies


@pytest.mark.parametrize(
    "site",
    ['qingpu"; filename="evil.exe', "qingpu\r\nSet-Cookie: x=1", "qingpu\x00", "QINGPU", "../x"],
)
def test_unsafe_site_or_period_is_refused(client: TestClient, site: str) -> None:
    refused(get(client, "alerts", "csv", site=site), site)
    for period in ("2026-11\r\nX: y", '2026-11"', "2026-11-01T00", "November"):
        refused(client.get("/api/export/alerts.csv", params={"period": period}), period)


def test_tabular_units() -> None:
    rows = flatten(
        [
            {
                "a": {"b": {"c": [1, "x"]}, "d": None},
                "n": -2,
                "f": -2.5,
                "s": "-2",
                "u": uuid.UUID(int=1),
            }
        ]
    )
    assert rows == [
        {"a.b.c": "1; x", "a.d": None, "n": -2, "f": -2.5, "s": "-2", "u": str(uuid.UUID(int=1))}
    ]
    assert [neutralise(v) for v in ("=1", "a=1", 5, -5, None, "")] == [
        "'=1",
        "a=1",
        5,
        -5,
        None,
        "",
    ]
    ws = load_workbook(io.BytesIO(to_xlsx(rows, "t/[x]"))).active
    assert ws is not None
    assert [c.value for c in ws[2]] == ["1; x", None, -2, -2.5, "'-2", str(uuid.UUID(int=1))]
    assert [c.data_type for c in ws[2]][2:5] == ["n", "n", "s"]
    assert csv_rows(to_csv(rows))[0]["s"] == "'-2"
    assert content_disposition("a-b.csv") == 'attachment; filename="a-b.csv"'
    assert content_disposition("报告.csv") == (
        "attachment; filename=\"__.csv\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.csv"
    )
    for bad in ('a".csv', "a\r\n.csv", "a\x00", "a;b", ""):
        with pytest.raises(ValueError):
            content_disposition(bad)


def test_security_headers_everywhere(client: TestClient) -> None:
    load(client)
    responses = {
        "page": client.get("/"),
        "login": client.get("/login"),
        "static": client.get("/static/app.js"),
        "report": client.get("/report/qingpu/2026-11"),
        "export": get(client, "alerts", "xlsx", site="qingpu"),
        "json": client.get("/api/me"),
        "error": client.get("/api/export/alerts.csv", params={"period": "x"}),
        "not found": client.get("/nowhere"),
    }
    for what, r in responses.items():
        assert r.headers["content-security-policy"] == CSP, what
        assert r.headers["x-content-type-options"] == "nosniff", what
        assert r.headers["referrer-policy"] == "no-referrer", what
        assert r.headers["x-frame-options"] == "DENY", what
    for what in ("page", "report", "export", "json", "error"):
        assert responses[what].headers["cache-control"] == "no-store", what
    csp = dict(d.split(" ", 1) for d in CSP.split("; "))
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["object-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    report = responses["report"]
    assert report.status_code == 200
    assert "<style" not in report.text and "style=" not in report.text
    assert "<script" not in report.text
    assert '<link rel="stylesheet" href="/static/report.css">' in report.text
    assert client.get("/static/report.css").status_code == 200
    login = responses["login"].text
    assert "<script>" not in login and 'src="/static/login.js"' in login
    # the OpenAPI page: its CDN and its own inline script by hash, nothing broader
    docs = client.get("/docs")
    policy = docs.headers["content-security-policy"]
    assert "'sha256-" in policy and "unsafe-inline" not in policy
