"""``warmwindow helpdesk push``: the help-desk system's daily H-ONLINE figures, sent to
the aggregator (``POST /api/helpdesk/kpis``) with a service token granted ``kpis``.

The input is the help-desk system's CSV export, one row per window and day (columns in
``COLUMNS``; docs/helpdesk-feed.md). Every row is checked before anything is sent; a bad
one is named by file and line and nothing goes out. Each row is then posted; 5xx answers,
429, timeouts and refused connections are retried with capped exponential backoff. The
server keeps one row per (centre, window, day), so sending a day again replaces its
figures: a push can be repeated safely, e.g. after the help-desk system corrected a day.
A 401 stops the push (the token is wrong, every row would fail); a 403, 404 or 422 refuses
that row, named, and the others still go.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import httpx

#: The export's columns, in any order; other columns are ignored.
COLUMNS: Final = (
    "site",
    "window",
    "day",
    "requests",
    "first_response_within_1min",
    "resolved",
)
PATH: Final = "/api/helpdesk/kpis"
#: Answers worth another try: the server or a proxy in front of it was not ready.
RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Row:
    """One window's day as the help-desk system exported it (``line`` in the file)."""

    line: int
    site: str
    window: str
    day: date
    requests: int
    first_response_within_1min: int
    resolved: int

    def body(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "window": self.window,
            "day": self.day.isoformat(),
            "requests": self.requests,
            "first_response_within_1min": self.first_response_within_1min,
            "resolved": self.resolved,
        }

    def name(self) -> str:
        return f"line {self.line} ({self.site}/{self.window} {self.day.isoformat()})"

    def figures(self) -> str:
        n = self.requests
        share = lambda k: f" ({k / n:.0%})" if n else ""  # noqa: E731
        return (
            f"{n} requests, {self.first_response_within_1min} answered within 1 min"
            f"{share(self.first_response_within_1min)}, {self.resolved} resolved"
            f"{share(self.resolved)}"
        )


class FeedFileError(ValueError):
    """The export cannot be sent as it is; the message names the file and line."""


def _count(path: Path, line: int, col: str, text: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise FeedFileError(f"{path}:{line}: {col} must be a whole number, not {text!r}") from None
    if v < 0:
        raise FeedFileError(f"{path}:{line}: {col} cannot be negative ({v})")
    return v


def read_export(path: Path) -> list[Row]:
    """The export's rows, all checked; a bad one raises ``FeedFileError`` naming it.

    UTF-8 (a BOM, as spreadsheet programs write it, is accepted); a header row naming the
    columns; blank lines skipped. The same window and day twice is refused (which one
    would be meant?)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        head = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in head]
        if missing:
            raise FeedFileError(f"{path}:1: header lacks {', '.join(missing)} (has {head})")
        reader.fieldnames = head
        rows: list[Row] = []
        seen: dict[tuple[str, str, date], int] = {}
        for raw in reader:
            line = reader.line_num
            if all(not (v or "").strip() for v in raw.values() if isinstance(v, str)):
                continue
            cells = {c: (raw.get(c) or "").strip() for c in COLUMNS}
            for c in ("site", "window", "day"):
                if not cells[c]:
                    raise FeedFileError(f"{path}:{line}: {c} is empty")
            try:
                day = date.fromisoformat(cells["day"])
            except ValueError:
                raise FeedFileError(
                    f"{path}:{line}: day must be YYYY-MM-DD, not {cells['day']!r}"
                ) from None
            n, fast, resolved = (
                _count(path, line, c, cells[c])
                for c in ("requests", "first_response_within_1min", "resolved")
            )
            if fast > n or resolved > n:
                raise FeedFileError(
                    f"{path}:{line}: first_response_within_1min ({fast}) and resolved "
                    f"({resolved}) cannot exceed requests ({n})"
                )
            key = (cells["site"], cells["window"], day)
            if key in seen:
                raise FeedFileError(
                    f"{path}:{line}: {key[0]}/{key[1]} {day.isoformat()} again "
                    f"(first on line {seen[key]})"
                )
            seen[key] = line
            rows.append(Row(line, cells["site"], cells["window"], day, n, fast, resolved))
    return rows


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: ``first_s`` doubling up to ``cap_s``, each
    wait drawn from its upper half so feeds restarted together do not retry in step."""

    first_s: float = 1.0
    cap_s: float = 30.0
    attempts: int = 6  #: tries per row, the first included

    def wait_s(self, retry: int, rnd: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap_s, self.first_s * 2**retry)
        return ceiling / 2 + rnd() * ceiling / 2


@dataclass
class PushReport:
    sent: list[Row] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  #: rows the server refused, named
    retries: int = 0
    stopped: str | None = None  #: why the push stopped before the end, if it did

    @property
    def ok(self) -> bool:
        return not self.refused and self.stopped is None


def _detail(r: httpx.Response) -> str:
    try:
        d = r.json().get("detail")
    except (ValueError, AttributeError):
        return r.text[:200]
    if isinstance(d, list):  # FastAPI's validation errors: where, and what
        return "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', [])[1:])}: {e.get('msg')}" for e in d
        )
    return str(d)


def push(
    rows: Iterable[Row],
    post: Callable[[str, dict[str, Any]], httpx.Response],
    *,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> PushReport:
    """Post each row; ``say`` what was sent and what was refused."""
    report = PushReport()
    for row in rows:
        for attempt in range(backoff.attempts):
            why: str
            try:
                r = post(PATH, row.body())
            except httpx.TransportError as exc:  # timeouts, refused connections, resets
                why = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code < 300:
                    report.sent.append(row)
                    say(f"sent {row.name()}: {row.figures()}")
                    break
                if r.status_code not in RETRY_STATUS:
                    reason = f"{row.name()}: refused {r.status_code}: {_detail(r)}"
                    if r.status_code == 401:
                        report.stopped = f"{reason} (is the token file right, and not revoked?)"
                        say(f"stopped at {report.stopped}")
                        return report
                    report.refused.append(reason)
                    say(f"refused {reason}")
                    break
                why = f"{r.status_code} {_detail(r)}"
            if attempt + 1 == backoff.attempts:
                report.stopped = f"{row.name()}: gave up after {backoff.attempts} tries ({why})"
                say(f"stopped at {report.stopped}")
                return report
            wait = backoff.wait_s(attempt)
            report.retries += 1
            say(f"retry {row.name()} in {wait:.1f} s: {why}")
            sleep(wait)
    return report


def _push_cli(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    try:
        rows = read_export(args.csv)
    except (FeedFileError, OSError, csv.Error) as exc:
        print(f"nothing sent: {exc}")
        return 2
    token = args.token_file.read_text(encoding="utf-8").strip()
    backoff = Backoff(first_s=args.retry_first, cap_s=args.retry_cap, attempts=args.attempts)
    with httpx.Client(
        base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=args.timeout
    ) as http:
        report = push(rows, lambda path, body: http.post(path, json=body), backoff=backoff)
    left = len(rows) - len(report.sent) - len(report.refused)
    print(
        f"{len(report.sent)} of {len(rows)} rows stored, {len(report.refused)} refused, "
        f"{report.retries} retries" + (f", {left} not sent" if report.stopped else "")
    )
    return 0 if report.ok else 1


def register(sub: Any) -> None:
    hd = sub.add_parser("helpdesk", help="the help-desk system's H-ONLINE feed")
    hs = hd.add_subparsers(dest="helpdesk_command", required=True)
    p = hs.add_parser("push", help="send a CSV export of daily figures per window")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the aggregator")
    p.add_argument("--token-file", type=Path, required=True, help="a token granted 'kpis'")
    p.add_argument("--csv", type=Path, required=True, help="the export (docs/helpdesk-feed.md)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--attempts", type=int, default=6, help="tries per row, the first included")
    p.add_argument("--retry-first", type=float, default=1.0, help="first wait, seconds")
    p.add_argument("--retry-cap", type=float, default=30.0, help="longest wait, seconds")
    p.set_defaults(func=_push_cli)
