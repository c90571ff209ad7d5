"""The monthly reports as print-ready HTML, and as PDF rendered here with WeasyPrint.

One renderer for both: the PDF is the same document without its screen-only links,
laid out by WeasyPrint with the same stylesheet (``static/report.css``) and the Noto
Sans CJK fonts fontconfig finds on the machine; it fetches nothing (no URL is allowed).
Labels are Chinese, the dashboard's default language; every code a row carries is
named in words here, so no raw code reaches the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

from server.metrics.measures import Measures
from server.reports import (
    CONDUCT,
    Appeal,
    Case,
    CentreReport,
    ClerkReport,
    Criterion,
    Decision,
    Finding,
    ProbationDecision,
    Records,
    Verdict,
)

STYLESHEET: Final = Path(__file__).resolve().parent.parent / "web" / "static" / "report.css"
BRAND: Final = "暖心窗口"
NONE_RECORDED: Final = "本月无记录"

CRITERIA: Final = {
    "stand_on_call_rate": "叫号起立率",
    "smile_at_greeting_rate": "微笑迎客率",
    "farewell_stand_rate": "起立送别率",
    "evaluation_coverage": "评价覆盖率",
    "good_review_rate": "好评率",
    "away_without_sign_min": "无牌离岗",
    "overdue_cases": "差评整改逾期",
    "inspector_findings": "督查发现(不符合)",
}
#: Criteria whose value is a count or minutes, and whose threshold is a most.
UNITS: Final = {"away_without_sign_min": "分钟", "overdue_cases": "件", "inspector_findings": "条"}
STATUS: Final = {
    "pass": "达标",
    "fail": "未达标",
    "insufficient_observed_sessions": "观测不足未评",
    "insufficient_data": "样本不足",
    "no_data": "无数据",
    "not_counted": "仅列示不计入",
}
RESULT: Final = {"pass": "合格", "fail": "不合格", "insufficient_data": "样本不足"}
SIGN_OFF: Final = {
    "provisional": "待签核",
    "confirmed": "已确认",
    "overridden": "已改判",
    "recomputed": "重新计算待签核",
}
PROBATION: Final = {
    "in_good_standing": "正常",
    "probation_next_month": "建议下月试用",
    "on_probation": "试用期中",
    "probation_passed": "试用期通过",
    "replace_recommended": "建议退回派遣单位",
}
PROBATION_ACTION: Final = {"start": "开始试用", "end": "结束试用"}
PROBATION_OUTCOME: Final = {"passed": "通过", "returned_to_agency": "退回派遣单位"}
DECISION: Final = {"confirm": "确认", "override": "改判"}
FINDING_KIND: Final = {"patrol": "现场巡查", "video_check": "双录抽查", "survey": "满意度调查"}
FINDING_OUTCOME: Final = {"complied": "符合", "not_complied": "不符合"}
CLAUSE: Final = {
    "G-SMILE": "微笑服务",
    "G-GAZE": "目光友善",
    "G-DRESS": "仪容仪表",
    "G-VOICE": "语音语调",
    "W-CALL": "叫号起立迎客",
    "W-TWO-STANDS": "两立(起立迎送)",
    "W-BOTH-HANDS": "一双手(双手递接)",
    "W-FAREWELL": "起立送别",
    "W-EVALUATE": "邀请评价",
    "W-AWAY-SIGN": "离岗摆放请稍候牌",
    "F-RECEIVE": "前台接待",
    "H-PRIORITY": "优先服务",
}
SESSION_VERDICT: Final = {
    "stood_on_call": "叫号起立",
    "smiled_at_greeting": "微笑迎客",
    "stood_at_farewell": "起立送别",
    "smiled_at_farewell": "送别微笑",
    "greeted_first": "主动迎客",
}
APPEAL_STATUS: Final = {"open": "待处理", "upheld": "已支持", "rejected": "已驳回"}
APPEAL_RESOLUTION: Final = {"corrected": "更正该次判定", "not_counted": "该次服务不计入"}
CASE_STATE: Final = {
    "open": "待处理",
    "assigned": "已分派",
    "called_back": "已回访",
    "rectified": "已整改",
    "closed": "已办结",
}
CALLBACK: Final = {  # server.policy.casework.CallbackOutcome
    "reached_satisfied": "已联系，满意",
    "reached_not_satisfied": "已联系，仍不满意",
    "unreachable": "未联系上",
}
RATING: Final = {
    "very_satisfied": "非常满意",
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
    "very_dissatisfied": "非常不满意",
}

esc = html.escape


def named(labels: dict[str, str], code: str | None) -> str:
    """A code in words; one this build does not know yet is shown as it is, escaped."""
    if code is None:
        return "—"
    return esc(labels.get(code, code))


def pct(v: float | None) -> str:
    """85% / 85.3%: one decimal where it says something."""
    if v is None:
        return "—"
    return f"{v * 100:.1f}".removesuffix(".0") + "%"


def value(c: Criterion) -> str:
    if c.value is None:
        return "—"
    if c.name in UNITS:
        return f"{c.value:.0f} {UNITS[c.name]}"
    return pct(c.value)


def threshold(c: Criterion) -> str:
    if c.name in UNITS:
        return f"≤ {c.threshold:.0f} {UNITS[c.name]}"
    return f"≥ {pct(c.threshold)}"


class Clock:
    """Times in the server's time zone."""

    def __init__(self, tz: str) -> None:
        self.tz = ZoneInfo(tz)

    def day(self, ms: int | None) -> str:
        return "—" if ms is None else self._at(ms).strftime("%Y-%m-%d")

    def minute(self, ms: int | None) -> str:
        return "—" if ms is None else self._at(ms).strftime("%Y-%m-%d %H:%M")

    def _at(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.tz)


def month_name(month: str) -> str:
    y, m = month.split("-")
    return f"{y}年{int(m)}月"


# ------------------------------------------------------------------ building blocks


def table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str = NONE_RECORDED) -> str:
    """A table whose cells are already escaped HTML; no rows: the empty state, said."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def kpis(m: Measures) -> str:
    cells = (
        ("服务人次", str(m.sessions)),
        ("叫号起立率", pct(m.stand_on_call_rate)),
        ("微笑迎客率", pct(m.smile_at_greeting_rate)),
        ("起立送别率", pct(m.farewell_stand_rate)),
        ("评价覆盖率", pct(m.evaluation_coverage)),
        ("好评率", pct(m.good_review_rate)),
        ("差评数", str(m.bad_reviews)),
        ("无牌离岗(分钟)", f"{m.away_without_sign_min:.0f}"),
        ("未能观测", f"{m.not_observed_sessions} ({pct(m.not_observed_share)})"),
    )
    return (
        '<div class="kpis">'
        + "".join(f"<div>{esc(k)}<br><b>{esc(v)}</b></div>" for k, v in cells)
        + "</div>"
    )


def status(s: str) -> str:
    return f'<span class="st {esc(s)}">{named(STATUS, s)}</span>'


def result(r: str) -> str:
    return f'<span class="st {esc(r)}">{named(RESULT, r)}</span>'


def evidence(c: Criterion) -> str:
    if c.evidence is None:
        return "—"
    return f"{c.evidence}+" if c.evidence_capped else str(c.evidence)


def criterion_cell(c: Criterion, show_threshold: bool) -> str:
    """A criterion in a centre's matrix: value, status, not-observed and evidence counts."""
    parts = [f"<b>{value(c)}</b>"]
    if show_threshold:
        parts.append(f'<span class="small">{esc(threshold(c))}</span>')
    parts.append(status(c.status))
    if c.not_observed:
        parts.append(f'<span class="small">未能观测 {c.not_observed}</span>')
    if c.evidence is not None:
        parts.append(f'<span class="small">证据 {evidence(c)} 条</span>')
    return "<br>".join(parts)


def sign_off(v: Verdict, clock: Clock) -> str:
    label = named(SIGN_OFF, v.sign_off)
    if v.decisions:
        last = v.decisions[-1]
        return f"{label}<br>{small(f'{esc(last.decided_by)} {clock.day(last.decided_ms)}')}"
    return label


def small(text: str) -> str:
    return f'<span class="small">{text}</span>'


def failed(v: Verdict) -> str:
    names = [CRITERIA.get(c.name, c.name) for c in v.criteria if c.status == "fail"]
    return esc("、".join(names)) if names else "—"


def legend() -> str:
    return (
        '<p class="note">未能观测：摄像头未能看清的服务人次（口罩、遮挡、侧脸、逆光等），'
        "不是违规，不计入该项比率。观测不足未评：该项可观测的服务人次少于最低样本数，不作判定。"
        "证据：未达标项所依据的服务、评价或离岗记录条数（“+”表示仅列出前若干条）。</p>"
    )


# ------------------------------------------------------------------ the records' sections


def decisions_table(rows: Sequence[Decision], names: dict[str, str], clock: Clock) -> str:
    return table(
        ("工作人员", "签核", "签核结果", "当时计算结果", "理由", "签核人", "时间"),
        (
            (
                esc(names.get(d.clerk_id, d.clerk_id)),
                named(DECISION, d.action),
                result(d.result),
                result(d.computed_result),
                esc(d.reason),
                esc(d.decided_by),
                clock.minute(d.decided_ms),
            )
            for d in rows
        ),
    )


def findings_table(rows: Sequence[Finding], names: dict[str, str], clock: Clock) -> str:
    def state(f: Finding) -> str:
        if f.withdrawn_ms is None:
            return "有效"
        why = f"：{esc(f.withdrawn_reason)}" if f.withdrawn_reason else ""
        return f"已撤回({esc(f.withdrawn_by or '')} {clock.day(f.withdrawn_ms)}){why}"

    return table(
        ("日期", "工作人员", "方式", "条款", "结论", "情况说明", "附件", "记录人", "状态"),
        (
            (
                clock.day(f.observed_ms),
                esc(names.get(f.clerk_id, f.clerk_id)),
                named(FINDING_KIND, f.kind),
                named(CLAUSE, f.criterion),
                f'<span class="st {esc(f.outcome)}">{named(FINDING_OUTCOME, f.outcome)}</span>',
                esc(f.note),
                str(f.attachments),
                esc(f.recorded_by),
                state(f),
            )
            for f in rows
        ),
    )


def probation_table(rows: Sequence[ProbationDecision], names: dict[str, str], clock: Clock) -> str:
    return table(
        ("工作人员", "试用月份", "决定", "结果", "理由", "决定人", "时间"),
        (
            (
                esc(names.get(p.clerk_id, p.clerk_id)),
                month_name(p.month),
                named(PROBATION_ACTION, p.action),
                named(PROBATION_OUTCOME, p.outcome) if p.outcome else "—",
                esc(p.reason),
                esc(p.decided_by),
                clock.minute(p.decided_ms),
            )
            for p in rows
        ),
    )


def appeals_table(rows: Sequence[Appeal], names: dict[str, str], clock: Clock) -> str:
    def subject(a: Appeal) -> str:
        if a.session_id is None:
            return "月度考核结果"
        return f"单次服务：{named(SESSION_VERDICT, a.criterion)}" if a.criterion else "单次服务"

    def outcome(a: Appeal) -> str:
        if a.status == "open":
            return "—"
        parts = [named(APPEAL_RESOLUTION, a.resolution)] if a.resolution else []
        if a.resolution_note:
            parts.append(esc(a.resolution_note))
        parts.append(
            f'<span class="small">{esc(a.resolved_by or "")} {clock.day(a.resolved_ms)}</span>'
        )
        return "<br>".join(parts)

    return table(
        ("提出日期", "工作人员", "申诉对象", "申诉理由", "状态", "处理结果"),
        (
            (
                clock.day(a.filed_ms),
                esc(names.get(a.clerk_id, a.clerk_id)),
                subject(a),
                esc(a.note),
                named(APPEAL_STATUS, a.status),
                outcome(a),
            )
            for a in rows
        ),
    )


def cases_table(rows: Sequence[Case], names: dict[str, str], clock: Clock) -> str:
    def state(c: Case) -> str:
        s = named(CASE_STATE, c.state)
        if c.overdue:
            s += ' <span class="st fail">逾期</span>'
        if c.reopened:
            s += f'<br><span class="small">重新打开 {c.reopened} 次</span>'
        return s

    def callback(c: Case) -> str:
        if c.callback_ms is None:
            return "未回访"
        return f"{clock.day(c.callback_ms)} {named(CALLBACK, c.callback_outcome)}"

    def closed(c: Case) -> str:
        if c.closed_ms is None:
            return "—"
        return f"{esc(c.closed_by or '')} {clock.day(c.closed_ms)}"

    return table(
        (
            "日期",
            "窗口",
            "工作人员",
            "评价",
            "整改期限",
            "办理状态",
            "承办人",
            "回访",
            "整改措施",
            "办结",
        ),
        (
            (
                clock.day(c.opened_ms),
                esc(c.window),
                esc(names.get(c.clerk_id, c.clerk_id)) if c.clerk_id else "未签到",
                named(RATING, c.rating),
                clock.day(c.due_ms),
                state(c),
                esc(c.assigned_to or "—"),
                callback(c),
                esc(c.rectification or c.note or "—"),
                closed(c),
            )
            for c in rows
        ),
    )


def records_sections(r: Records, names: dict[str, str], clock: Clock, *, whose: str) -> str:
    return (
        f"<h2>考核签核记录</h2>{decisions_table(r.decisions, names, clock)}"
        "<h2>督查发现（现场巡查、双录抽查、满意度调查）</h2>"
        f"{findings_table(r.findings, names, clock)}"
        f"<h2>试用期决定</h2>{probation_table(r.probation, names, clock)}"
        f"<h2>申诉</h2>{appeals_table(r.appeals, names, clock)}"
        f"<h2>差评整改（{esc(whose)}，15个工作日内办结）</h2>{cases_table(r.cases, names, clock)}"
    )


def page(title: str, heading: str, sub: str, pdf_href: str | None, body: str) -> str:
    """The document; ``pdf_href`` None: the PDF's own copy (no screen links, the
    stylesheet given to WeasyPrint directly)."""
    head_link = '<link rel="stylesheet" href="/static/report.css">' if pdf_href is not None else ""
    links = (
        f'<p class="links"><a href="{esc(pdf_href)}">下载 PDF</a> · 可用浏览器“打印”直接打印</p>'
        if pdf_href is not None
        else ""
    )
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
{head_link}
</head><body class="report">
<header><p class="brand">{BRAND} · 微笑服务</p><h1>{heading}</h1>
<p class="sub">{sub}</p>{links}</header>
{body}
</body></html>"""


# ------------------------------------------------------------------ the two reports


def centre_html(r: CentreReport, tz: str, *, pdf: bool = False) -> str:
    clock = Clock(tz)
    names = dict(r.names)
    base = f"/report/{quote(r.unit.site)}/{quote(r.month)}"

    def link(v: Verdict) -> str:
        if pdf:
            return esc(v.name)
        return f'<a href="/report/clerk/{quote(v.clerk_id)}/{quote(r.month)}">{esc(v.name)}</a>'

    by_window = table(
        ("窗口", "人次", "起立", "微笑", "送别", "评价覆盖", "好评率", "无牌离岗(分)", "未能观测"),
        (
            (
                esc(k.rpartition("/")[2]),  # "site/window": the site is the report's
                str(m.sessions),
                pct(m.stand_on_call_rate),
                pct(m.smile_at_greeting_rate),
                pct(m.farewell_stand_rate),
                pct(m.evaluation_coverage),
                pct(m.good_review_rate),
                f"{m.away_without_sign_min:.0f}",
                f"{m.not_observed_sessions} ({pct(m.not_observed_share)})",
            )
            for k, m in r.by_window
        ),
        empty="本月无服务记录",
    )
    summary = table(
        ("工作人员", "计算结果", "签核", "现行结果", "试用期", "未达标项"),
        (
            (
                link(v),
                result(v.computed),
                sign_off(v, clock),
                result(v.stands),
                named(PROBATION, v.probation),
                failed(v),
            )
            for v in r.verdicts
        ),
        empty="本中心尚无工作人员",
    )
    matrix = _matrix(r.verdicts)
    ranking = table(
        ("名次", "工作人员", "规范服务/人次", "得分(Wilson下限)", "未能观测(不计入)"),
        (
            (
                esc(str(x["rank"] or "—")),
                esc(names.get(x["clerk_id"], x["clerk_id"])),
                f"{x['exemplary']}/{x['sessions']}",
                f"{x['score']:.3f}",
                str(x["not_observed"]),
            )
            for x in r.ranking
        ),
        empty="本月无排名（服务人次不足）",
    )
    body = (
        f"<h2>本月概况</h2>{kpis(r.total)}"
        f"<h2>按窗口</h2>{by_window}"
        f"<h2>月度考核 (A-PASS)</h2>{summary}"
        f"<h3>考核项明细</h3>{matrix}{legend()}"
        + records_sections(r.records, names, clock, whose="本中心")
        + f"<h2>微笑之星排名 (A-STAR)</h2>{ranking}"
    )
    title = f"{r.unit.name} {month_name(r.month)} 月度报告"
    sub = (
        f"{month_name(r.month)} · {esc(r.unit.district)} · 生成于 {clock.minute(r.generated_ms)}"
        " · 数据来自窗口终端行为事件（无图像）"
    )
    heading = f"{esc(r.unit.name)} · 微笑服务月度报告"
    return page(title, heading, sub, None if pdf else f"{base}.pdf", body)


def _matrix(verdicts: Sequence[Verdict]) -> str:
    """Clerks by criteria. The thresholds go in the header when every clerk was judged
    by the same ones (one centre, one month: the usual case), else in each cell."""
    if not verdicts:
        return ""
    names = [c.name for c in verdicts[0].criteria]
    same = all(
        [(c.name, c.threshold) for c in v.criteria]
        == [(c.name, c.threshold) for c in verdicts[0].criteria]
        for v in verdicts
    )
    head = "".join(
        f"<th>{esc(CRITERIA.get(n, n))}"
        + (f'<br><span class="small">{esc(threshold(c))}</span>' if same else "")
        + "</th>"
        for n, c in zip(names, verdicts[0].criteria, strict=True)
    )
    rows = "".join(
        f"<tr><td>{esc(v.name)}</td>"
        + "".join(f"<td>{criterion_cell(c, not same)}</td>" for c in v.criteria)
        + "</tr>"
        for v in verdicts
    )
    return (
        f'<table class="matrix"><thead><tr><th>工作人员</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def clerk_html(r: ClerkReport, tz: str, *, pdf: bool = False) -> str:
    clock = Clock(tz)
    v = r.verdict
    names = {r.clerk_id: r.name}
    criteria_rows = table(
        ("考核项", "本月数值", "达标线", "判定", "可观测人次", "未能观测", "证据条数"),
        (
            (
                esc(CRITERIA.get(c.name, c.name)),
                value(c),
                esc(threshold(c)),
                status(c.status),
                str(c.observed_sessions) if c.name in CONDUCT else "—",
                str(c.not_observed) if c.name in CONDUCT else "—",
                evidence(c),
            )
            for c in v.criteria
        ),
        empty="本月无考核数据",
    )
    standing = (
        '<div class="kpis verdict">'
        f"<div>计算结果<br><b>{result(v.computed)}</b></div>"
        f"<div>签核<br><b>{sign_off(v, clock)}</b></div>"
        f"<div>现行结果<br><b>{result(v.stands)}</b></div>"
        f"<div>试用期<br><b>{named(PROBATION, v.probation)}</b></div>"
        "</div>"
    )
    body = (
        f"<h2>本月服务数据</h2>{kpis(r.measures)}"
        f"<h2>月度考核 (A-PASS)</h2>{standing}{criteria_rows}{legend()}"
        + records_sections(r.records, names, clock, whose="本人")
    )
    title = f"{r.name} {month_name(r.month)} 个人月度报告"
    sub = (
        f"{month_name(r.month)} · {esc(r.unit.name)} · 工号 {esc(r.clerk_id)}"
        f" · 生成于 {clock.minute(r.generated_ms)} · 数据来自窗口终端行为事件（无图像）"
    )
    heading = f"{esc(r.name)} · 个人月度报告"
    href = f"/report/clerk/{quote(r.clerk_id)}/{quote(r.month)}.pdf"
    return page(title, heading, sub, None if pdf else href, body)


# ------------------------------------------------------------------ PDF


class PdfUnavailable(RuntimeError):
    """WeasyPrint or the system libraries it needs (Pango) are not installed."""


@cache
def _stylesheet() -> str:
    return STYLESHEET.read_text(encoding="utf-8")


def to_pdf(document: str) -> bytes:
    """The document as PDF. WeasyPrint is imported here, not with the app: the HTML
    report and everything else keep working on a machine without Pango."""
    try:
        from weasyprint import CSS, HTML
        from weasyprint.urls import URLFetcher
    except (ImportError, OSError) as exc:  # OSError: the Pango library is missing
        raise PdfUnavailable(str(exc)) from None
    nothing = URLFetcher(allowed_protocols=())  # the document fetches nothing
    out = HTML(string=document, url_fetcher=nothing).write_pdf(
        stylesheets=[CSS(string=_stylesheet(), url_fetcher=nothing)]
    )
    return bytes(out)
