"""CSV / XLSX exports of every dashboard table, and the monthly reports (HTML and PDF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, Response

from server.api.access import Access, AccessDep
from server.api.report_render import PdfUnavailable, centre_html, clerk_html, to_pdf
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
            c for c in a.case_list(None, scope.site) if pd.start_ms <= c["opened_ms"] < pd.end_ms
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
CLERK_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # agent.protocol.ClerkId
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


# ------------------------------------------------------------------ monthly reports
# A centre's month and a clerk's month, as print-ready HTML and as PDF rendered here
# (server/api/report_render.py); the data through Access (server/reports.py's read model).
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
Month = Annotated[str, Path(pattern=MONTH_PATTERN, description="The month, YYYY-MM.")]
Site = Annotated[str, Path(pattern=SLUG_PATTERN, description="The centre.")]
ClerkId = Annotated[str, Path(pattern=CLERK_PATTERN, description="The clerk's staff id.")]
PDF_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The report as PDF (Content-Disposition: attachment).",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    },
    503: {"description": "PDF rendering (WeasyPrint, Pango) is not installed on this server."},
}


def _pdf(document: str, filename: str) -> Response:
    try:
        body = to_pdf(document)
    except PdfUnavailable as exc:
        raise HTTPException(503, f"PDF rendering is not available here: {exc}") from None
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": content_disposition(filename)},
    )


@router.get("/report/clerk/{clerk_id}/{month}.pdf", response_class=Response, responses=PDF_RESPONSE)
def clerk_report_pdf(clerk_id: ClerkId, month: Month, a: AccessDep) -> Response:
    """One clerk's monthly report as PDF (a clerk's own account: its own only)."""
    report = a.clerk_report(clerk_id, month, "pdf")
    document = clerk_html(report, a.settings.timezone, pdf=True)
    return _pdf(document, f"warmwindow-report-{clerk_id}-{month}.pdf")


@router.get("/report/clerk/{clerk_id}/{month}", response_class=HTMLResponse)
def clerk_report(clerk_id: ClerkId, month: Month, a: AccessDep) -> str:
    """One clerk's print-ready monthly report: measures, verdict with every criterion,
    findings, appeals, probation and bad-review cases."""
    return clerk_html(a.clerk_report(clerk_id, month, "html"), a.settings.timezone)


@router.get("/report/{site}/{month}.pdf", response_class=Response, responses=PDF_RESPONSE)
def monthly_report_pdf(site: Site, month: Month, a: AccessDep) -> Response:
    """A centre's monthly report as PDF."""
    document = centre_html(a.centre_report(site, month, "pdf"), a.settings.timezone, pdf=True)
    return _pdf(document, f"warmwindow-report-{site}-{month}.pdf")


@router.get("/report/{site}/{month}", response_class=HTMLResponse)
def monthly_report(site: Site, month: Month, a: AccessDep) -> str:
    """A centre's print-ready monthly report: measures, verdicts with every criterion,
    sign-offs, findings, probation decisions, appeals, bad-review cases, ranking."""
    return centre_html(a.centre_report(site, month, "html"), a.settings.timezone)
