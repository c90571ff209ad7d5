"""The monthly reports (a centre's and a clerk's) as HTML and as PDF rendered with
WeasyPrint, read back with poppler (``pdftotext``, ``pdffonts``): the Chinese names,
headings and the figures seeded, every glyph in the embedded Noto Sans CJK font; what
people recorded (findings, sign-offs, probation, appeals, the cases' workflow) as soon
as its rows exist, and 'none recorded' where there are none; who may read which.

``WW_SCREENSHOTS=1`` writes each PDF's first page to docs/screenshots/report-*.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fontTools.ttLib import TTCollection
from sqlalchemy import select, update

from agent import protocol as p
from server.api.app import ServerSettings, create_app
from server.reports import records
from server.store.db import Store, StoredEvent
from server.store.schema import (
    appeals,
    audit_log,
    cases,
    findings,
    probation_decisions,
    verdict_decisions,
)
from tests.conftest import EXAMPLE_SITE
from tests.server.test_api import sign_in
from tests.server.test_measures import Fleet, ms
from tests.server.test_observability import v3

REPO = Path(__file__).resolve().parents[2]
NOV = ms(2026, 11, 2, 9, 0)
PASSWORD = "Report-pass-2026!"
MONTH = "2026-11"


def seed_events() -> Fleet:
    """李敏 (c-li, w03): 24 sessions. The greeting smile of 4 could not be seen (a
    mask); of the 20 seen, 17 smiled: 85 %. 20 of 24 stood on call (83.3 %, under the
    90 % line: a failure with 4 items of evidence). One dissatisfied review (a case).
    王芳 (c-wang, w05): 5 sessions, too few for a verdict."""
    f = Fleet()
    for i in range(24):
        masked = i < 4
        v3(
            f,
            "w03",
            NOV + i * 900_000,
            stood=i not in (4, 5, 6, 7),
            smiled=not masked and i not in (8, 9, 10),
            unseen=("smiled_at_greeting",) if masked else (),
            rating=p.Rating.DISSATISFIED if i == 12 else p.Rating.SATISFIED,
        )
    for i in range(5):
        v3(f, "w05", NOV + i * 900_000)
    return f


def seed_records(store: Store, case_id: str) -> None:
    """What people recorded about 李敏's November (the tables of migration 0012)."""
    at = ms(2026, 11, 20, 15, 0)
    with store.engine.begin() as conn:
        conn.execute(
            findings.insert().values(
                finding_id=str(uuid.uuid4()),
                site="qingpu",
                clerk_id="c-li",
                kind="patrol",
                criterion="G-SMILE",
                outcome="not_complied",
                observed_ms=ms(2026, 11, 3, 10, 0),
                note="叫号后未微笑迎客",
                attachments=["rec-001"],
                recorded_by="督查员张",
                recorded_ms=at,
            )
        )
        conn.execute(
            verdict_decisions.insert().values(
                clerk_id="c-li",
                site="qingpu",
                month=MONTH,
                action="confirm",
                result="fail",
                computed_result="fail",
                computed={"result": "fail"},
                reason="核实无误",
                decided_by="中心主任",
                decided_ms=at,
            )
        )
        conn.execute(
            probation_decisions.insert().values(
                clerk_id="c-li",
                site="qingpu",
                month="2026-12",
                action="start",
                outcome=None,
                reason="十一月考核不合格",
                decided_by="中心主任",
                decided_ms=at + 60_000,
            )
        )
        conn.execute(
            appeals.insert().values(
                appeal_id=str(uuid.uuid4()),
                site="qingpu",
                clerk_id="c-li",
                month=MONTH,
                session_id=str(uuid.uuid4()),
                criterion="stood_on_call",
                note="当时在协助老人填表",
                filed_by="c-li",
                filed_ms=at + 120_000,
                status="rejected",
                resolution_note="录像显示未起立",
                resolved_by="中心主任",
                resolved_ms=at + 180_000,
            )
        )
        conn.execute(
            update(cases)
            .where(cases.c.case_id == case_id)
            .values(
                assigned_to="值班长刘",
                callback_ms=ms(2026, 11, 4, 10, 0),
                callback_outcome="reached_satisfied",
                rectification="加强起立迎客培训",
                rectified_ms=ms(2026, 11, 5, 10, 0),
                status="closed",
                closed_ms=ms(2026, 11, 6, 10, 0),
                closed_by="中心主任",
            )
        )


@dataclass
class Centre:
    client: TestClient
    store: Store
    case_id: str


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'r.db'}", sites=[EXAMPLE_SITE], mqtt=None)
    )
    with TestClient(app) as c:
        store: Store = app.state.store
        accounts = app.state.accounts
        store.add_clerk("c-li", "李敏", "qingpu")
        store.add_clerk("c-wang", "王芳", "qingpu")
        store.sign_in("c-li", "qingpu", "w03", NOV - 3_600_000)
        store.sign_in("c-wang", "qingpu", "w05", NOV - 3_600_000)
        f = seed_events()
        store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
        (case,) = store.list_cases(None, "qingpu")
        seed_records(store, case["case_id"])
        accounts.add_user("manager", PASSWORD, "centre_manager", "site:qingpu")
        accounts.add_user("li", PASSWORD, "clerk", "site:qingpu", clerk_id="c-li")
        sign_in(c, "manager", PASSWORD)
        yield Centre(c, store, case["case_id"])


def pdf_text(pdf: bytes, tmp_path: Path, name: str) -> tuple[str, str]:
    """The PDF's text (``pdftotext -layout``) and its font table (``pdffonts``)."""
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    fonts = subprocess.run(
        ["pdffonts", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return text, fonts


def noto_cjk_characters() -> set[int]:
    """The code points Noto Sans CJK SC has a glyph for (the font fontconfig picks)."""
    ask = ["fc-match", "-f", "%{file}", "Noto Sans CJK SC"]
    path = subprocess.run(ask, check=True, capture_output=True, text=True).stdout
    assert "NotoSansCJK" in path, path
    collection = TTCollection(path)
    sc = next(f for f in collection.fonts if "SC" in f["name"].getDebugName(1))
    return set(sc.getBestCmap())


def check_fonts(fonts: str, text: str, glyphs: set[int]) -> None:
    """Every font in the PDF is an embedded Noto Sans CJK face, and every character of
    its text has a glyph there: no fallback font, no missing-glyph box."""
    rows = [line.split() for line in fonts.splitlines()[2:] if line.strip()]
    assert rows, fonts
    for row in rows:
        assert "Noto-Sans-CJK" in row[0], fonts
        emb = row[-5]  # name type... encoding emb sub uni object ID
        assert emb == "yes", fonts
    missing = {ch for ch in text if not ch.isspace() and ord(ch) not in glyphs}
    assert not missing, f"characters without a glyph in Noto Sans CJK: {sorted(missing)}"


def screenshot(pdf: bytes, tmp_path: Path, name: str) -> Path:
    """The first page at 80 dpi: docs/screenshots when asked (WW_SCREENSHOTS=1)."""
    out = REPO / "docs" / "screenshots" if os.environ.get("WW_SCREENSHOTS") else tmp_path
    src = tmp_path / f"{name}-shot.pdf"
    src.write_bytes(pdf)
    first_page = ["-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile"]
    subprocess.run(["pdftoppm", *first_page, str(src), str(out / name)], check=True)
    png = out / f"{name}.png"
    assert png.stat().st_size > 10_000
    return png


def test_the_tools_are_installed() -> None:
    """`make deps` installs them; a machine without them fails here, not later."""
    for tool in ("pdftotext", "pdffonts", "pdftoppm", "fc-match"):
        assert shutil.which(tool), f"{tool} is missing: run make deps"


def test_centre_report_html_and_pdf(centre: Centre, tmp_path: Path) -> None:
    c = centre.client
    page = c.get(f"/report/qingpu/{MONTH}")
    assert page.status_code == 200, page.text
    html = page.text
    assert '<a href="/report/qingpu/2026-11.pdf">' in html
    assert '<a href="/report/clerk/c-li/2026-11">李敏</a>' in html
    for shown in ("暖心窗口", "李敏", "王芳", "85%", "83.3%", "未能观测 4", "证据 4 条"):
        assert shown in html, shown
    # what people recorded, in words
    for shown in ("叫号后未微笑迎客", "现场巡查", "不符合", "已确认", "开始试用", "已驳回"):
        assert shown in html, shown
    for shown in ("已办结", "值班长刘", "已联系，满意", "加强起立迎客培训"):
        assert shown in html, shown
    assert "本月无记录" not in html  # every section has its row

    r = c.get(f"/report/qingpu/{MONTH}.pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"] == "no-store"
    assert "warmwindow-report-qingpu-2026-11.pdf" in r.headers["content-disposition"]
    assert r.content.startswith(b"%PDF-")
    text, fonts = pdf_text(r.content, tmp_path, "centre")
    for shown in ("暖心窗口", "青浦区行政服务中心", "李敏", "王芳", "85%", "83.3%"):
        assert shown in text, shown
    for heading in ("本月概况", "按窗口", "月度考核", "督查发现", "试用期决定", "申诉", "差评整改"):
        assert heading in text, heading
    assert "下载 PDF" not in text  # the screen's links stay on the screen
    check_fonts(fonts, text, noto_cjk_characters())
    screenshot(r.content, tmp_path, "report-centre")

    with centre.store.engine.connect() as conn:
        views = conn.execute(
            select(audit_log.c.target, audit_log.c.detail).where(audit_log.c.action == "report")
        ).all()
    assert [(v.target, v.detail["format"]) for v in views] == [
        ("qingpu/2026-11", "html"),
        ("qingpu/2026-11", "pdf"),
    ]


def test_clerk_report_html_and_pdf(centre: Centre, tmp_path: Path) -> None:
    c = centre.client
    html = c.get(f"/report/clerk/c-li/{MONTH}").text
    assert '<a href="/report/clerk/c-li/2026-11.pdf">' in html
    for shown in ("李敏", "个人月度报告", "85%", "≥ 85%", "83.3%", "≥ 90%", "已确认", "已驳回"):
        assert shown in html, shown

    r = c.get(f"/report/clerk/c-li/{MONTH}.pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    assert r.headers["cache-control"] == "no-store"
    text, fonts = pdf_text(r.content, tmp_path, "clerk")
    for shown in ("李敏", "个人月度报告", "85%", "叫号起立率", "未达标", "当时在协助老人填表"):
        assert shown in text, shown
    assert "王芳" not in text
    check_fonts(fonts, text, noto_cjk_characters())
    screenshot(r.content, tmp_path, "report-clerk")

    # a clerk with nothing recorded: every section says so, none is left blank
    wang = c.get(f"/report/clerk/c-wang/{MONTH}").text
    assert wang.count("本月无记录") == 5
    assert "样本不足" in wang


def test_who_may_read_which_report(centre: Centre) -> None:
    c = centre.client
    assert c.get("/report/qingpu/2026-13").status_code == 422
    assert c.get("/report/qingpu/2026-11-02").status_code == 422
    assert c.get("/report/clerk/c-nobody/2026-11").status_code == 404
    sign_in(c, "li", PASSWORD)  # 李敏's own account (users.clerk_id)
    assert c.get(f"/report/clerk/c-li/{MONTH}").status_code == 200
    assert c.get(f"/report/clerk/c-li/{MONTH}.pdf").status_code == 200
    assert c.get(f"/report/clerk/c-wang/{MONTH}").status_code == 404
    assert c.get(f"/report/clerk/c-wang/{MONTH}.pdf").status_code == 404
    assert c.get(f"/report/qingpu/{MONTH}").status_code == 403
    assert c.get(f"/report/qingpu/{MONTH}.pdf").status_code == 403


def test_records_read_on_both_databases(store: Store) -> None:
    """The read model's queries on SQLite and PostgreSQL: a row shows as soon as it
    exists; another centre's rows never join a clerk's report."""
    store.add_clerk("c-li", "李敏", "qingpu")
    store.sign_in("c-li", "qingpu", "w03", NOV - 3_600_000)
    f = seed_events()
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
    start, end = ms(2026, 11, 1, 0, 0), ms(2026, 12, 1, 0, 0)
    now = ms(2026, 12, 2, 9, 0)
    before = records(store.engine, ["c-li"], MONTH, start, end, now, sites=None)
    assert before.findings == before.decisions == before.probation == before.appeals == ()
    (case,) = before.cases
    assert case.state == "open" and case.overdue  # due 15 working days after 2 November
    seed_records(store, case.case_id)
    after = records(store.engine, ["c-li"], MONTH, start, end, now, sites=None)
    assert [x.note for x in after.findings] == ["叫号后未微笑迎客"]
    assert after.findings[0].attachments == 1
    assert [(d.action, d.result) for d in after.decisions] == [("confirm", "fail")]
    assert [(x.month, x.action) for x in after.probation] == [("2026-12", "start")]
    assert [a.status for a in after.appeals] == ["rejected"]
    (closed,) = after.cases
    assert (closed.state, closed.overdue, closed.closed_by) == ("closed", False, "中心主任")
    elsewhere = records(
        store.engine, ["c-li"], MONTH, start, end, now, sites=frozenset({"zhujiajiao"})
    )
    assert elsewhere.findings == elsewhere.cases == elsewhere.appeals == ()


def test_without_weasyprint_the_html_stays_and_the_pdf_says_why(
    centre: Centre, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without Pango still serves the HTML report; the PDF answers 503."""
    import sys

    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint: ImportError
    c = centre.client
    assert c.get(f"/report/qingpu/{MONTH}").status_code == 200
    r = c.get(f"/report/qingpu/{MONTH}.pdf")
    assert r.status_code == 503 and "PDF rendering is not available" in r.text
