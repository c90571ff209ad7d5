"""CSV / XLSX exports of every dashboard table, and the printable monthly report."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from server.api.access import Access, AccessDep
from server.api.tabular import content_disposition, flatten, to_csv, to_xlsx
from server.metrics.measures import Measures, Scope

router = APIRouter()
Table = list[dict[str, Any]]
#: A criterion's statuses that give no judgement (the assessment table's "not_judged").
UNJUDGED: Final = ("insufficient_observed_sessions", "insufficient_data")


def _measure_rows(result: dict[str | None, Measures]) -> Table:
    return [
        {"group": k or "all"} | m.as_dict()
        for k, m in sorted(result.items(), key=lambda i: str(i[0]))
    ]


def _tables(name: str, a: Access, period: str, site: str | None) -> Table:
    """One table's rows, read through the request's ``Access`` (scoped like the pages)."""
    pd = a.period(period)
    scope: Scope = a.scope(None, site)
    producers: dict[str, Callable[[], Table]] = {
        "sessions": lambda: [
            {k: v for k, v in r.items() if k != "steps"} for r in a.timeline(scope, pd)
        ],
        "measures_by_window": lambda: _measure_rows(a.measures(scope, pd, group_by="window")),
        "measures_by_clerk": lambda: _measure_rows(a.measures(scope, pd, group_by="clerk")),
        "ranking": lambda: a.ranking(scope, pd),
        "alerts": lambda: [
            row
            for row in a.alerts(scope.site, since_ms=pd.start_ms, limit=100_000)
            if row["ts_ms"] < pd.end_ms
        ],
        "cases": lambda: [
            c for c in a.cases(None, scope.site) if pd.start_ms <= c["opened_ms"] < pd.end_ms
        ],
        "fleet": lambda: [f for f in a.fleet() if scope.site in (None, f["site"])],
        "assessment": lambda: [
            {k: v for k, v in c.items() if k not in ("failures", "measures", "criteria")}
            | {"failed": [f["criterion"] for f in c["failures"]]}
            | {"not_judged": [x["criterion"] for x in c["criteria"] if x["status"] in UNJUDGED]}
            | {"not_observed_sessions": c["measures"]["not_observed_sessions"]}
            for c in a.assessments(period, scope.site)
        ],
    }
    if name not in producers:
        raise HTTPException(404, f"no table {name!r}; one of {sorted(producers)}")
    return flatten(producers[name]())


#: The tables an export can name (the file name is built from these and checked values).
TABLES = (
    "sessions",
    "measures_by_window",
    "measures_by_clerk",
    "ranking",
    "alerts",
    "cases",
    "fleet",
    "assessment",
)
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"  # agent.protocol.Slug
PERIOD_PATTERN = r"^\d{4}(-(\d{2}(-\d{2})?|Q[1-4]))?$"  # YYYY-MM-DD, YYYY-MM, YYYY-Qn, YYYY


XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get(
    "/api/export/{name}.{fmt}",
    response_class=Response,
    responses={
        200: {
            "description": "The table as a download (Content-Disposition: attachment).",
            "content": {
                "text/csv": {"schema": {"type": "string", "description": "UTF-8 with BOM"}},
                XLSX: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def export_table(
    name: str,
    fmt: Literal["csv", "xlsx"],
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, max_length=10)],
    a: AccessDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=32)] = None,
) -> Response:
    """Download a dashboard table (sessions, measures_by_window, measures_by_clerk,
    ranking, alerts, cases, fleet, assessment) for a period as CSV or XLSX."""
    if name not in TABLES:
        raise HTTPException(404, f"no table {name!r}; one of {sorted(TABLES)}")
    rows = _tables(name, a, period, site)
    a.export_logged(name, period, site, fmt, len(rows))
    disposition = content_disposition(f"warmwindow-{name}-{site or 'all'}-{period}.{fmt}")
    if fmt == "csv":
        body, media = to_csv(rows), "text/csv; charset=utf-8"
    else:
        body = to_xlsx(rows, name)
        media = XLSX
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


@router.get("/report/{site}/{month}", response_class=HTMLResponse)
def monthly_report(site: str, month: str, a: AccessDep) -> str:
    """Print-ready monthly report of one unit (use the browser's Print to PDF)."""
    a.site(site)
    a.not_clerk()
    pd = a.period(month)
    unit = next((u for u in a.units() if u["site"] == site), None)
    if unit is None:
        raise HTTPException(404, "no such unit")
    scope = Scope(site=site)
    total = a.measures(scope, pd)[None]
    by_window = a.measures(scope, pd, group_by="window")
    ranking = a.ranking(scope, pd)
    verdicts = [a.verdict(c["clerk_id"], month) | {"name": c["name"]} for c in a.clerks(site)]
    cases = [c for c in a.cases(None, site) if pd.start_ms <= c["opened_ms"] < pd.end_ms]
    a.audit("report", f"{site}/{month}", {"clerks": len(verdicts)}, site)  # personal data
    tz = ZoneInfo(a.settings.timezone)

    def day(ms: int | None) -> str:
        return "—" if ms is None else datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d")

    esc = html.escape
    rows_w = "".join(
        f"<tr><td>{esc(k or '')}</td><td>{m.sessions}</td><td>{_pct(m.stand_on_call_rate)}</td>"
        f"<td>{_pct(m.smile_at_greeting_rate)}</td><td>{_pct(m.farewell_stand_rate)}</td>"
        f"<td>{_pct(m.evaluation_coverage)}</td><td>{_pct(m.good_review_rate)}</td>"
        f"<td>{m.away_without_sign_min:.0f}</td>"
        f"<td>{m.not_observed_sessions} ({_pct(m.not_observed_share)})</td></tr>"
        for k, m in sorted(by_window.items(), key=lambda i: str(i[0]))
    )
    rows_v = "".join(
        f'<tr><td>{esc(v["name"])}</td><td class="{esc(v["result"])}">{esc(v["result"])}</td>'
        f"<td>{esc(', '.join(f['criterion'] for f in v['failures']))}</td></tr>"
        for v in verdicts
    )
    rows_r = "".join(
        f"<tr><td>{esc(str(r['rank'] or '—'))}</td><td>{esc(r['clerk_id'])}</td><td>{r['exemplary']}/{r['sessions']}</td>"
        f"<td>{r['score']:.3f}</td><td>{r['not_observed']}</td></tr>"
        for r in ranking
    )
    rows_c = "".join(
        f"<tr><td>{day(c['opened_ms'])}</td><td>{esc(c['window'])}</td><td>{esc(c['rating'])}</td>"
        f"<td>{day(c['due_ms'])}</td><td>{esc(c['status'])}</td><td>{esc(c['note'] or '')}</td></tr>"
        for c in cases
    )
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(unit["name"])} {esc(month)} 月度报告</title>
<link rel="stylesheet" href="/static/report.css">
</head><body class="report">
<h1>{esc(unit["name"])} · 微笑服务月度报告 · {esc(month)}</h1>
<p>{esc(unit["district"])} · 生成于 {datetime.now(tz).strftime("%Y-%m-%d %H:%M")} · 数据来自窗口终端行为事件（无图像）</p>
<div class="kpis">
<div>服务人次<br><b>{total.sessions}</b></div>
<div>叫号起立率<br><b>{_pct(total.stand_on_call_rate)}</b></div>
<div>微笑迎客率<br><b>{_pct(total.smile_at_greeting_rate)}</b></div>
<div>起立送别率<br><b>{_pct(total.farewell_stand_rate)}</b></div>
<div>评价覆盖率<br><b>{_pct(total.evaluation_coverage)}</b></div>
<div>好评率<br><b>{_pct(total.good_review_rate)}</b></div>
<div>差评数<br><b>{total.bad_reviews}</b></div>
<div>无牌离岗(分钟)<br><b>{total.away_without_sign_min:.0f}</b></div>
<div>未能观测<br><b>{total.not_observed_sessions} ({_pct(total.not_observed_share)})</b></div>
</div>
<h2>按窗口</h2><table><tr><th>窗口</th><th>人次</th><th>起立</th><th>微笑</th><th>送别</th><th>评价覆盖</th><th>好评率</th><th>无牌离岗(分)</th><th>未能观测</th></tr>{rows_w}</table>
<h2>月度考核 (A-PASS)</h2><table><tr><th>工作人员</th><th>结果</th><th>未达标项</th></tr>{rows_v}</table>
<h2>微笑之星排名 (A-STAR)</h2><table><tr><th>名次</th><th>工作人员</th><th>规范服务/人次</th><th>得分(Wilson下限)</th><th>未能观测(不计入)</th></tr>{rows_r}</table>
<h2>差评整改 (15个工作日)</h2><table><tr><th>日期</th><th>窗口</th><th>评价</th><th>整改期限</th><th>状态</th><th>说明</th></tr>{rows_c}</table>
</body></html>"""
