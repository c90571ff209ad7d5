"""``warmwindow queue replay``: feed a recorded day of queue calls to the bridge.

The file holds one call per line (JSON, the body of ``POST /api/queue/v1/calls``), in the
order the queue system made them; a line may instead be a sign-in or sign-out
(``{"sign_in": {...}}`` / ``{"sign_out": {...}}``, the bodies of those routes). The
replay keeps the day's gaps, ``speed`` times faster, and moves the recorded times to now
(so the terminal's sessions and the calls line up), unless ``keep_times``. Each call is
sent once; a second replay of the same file is answered ``duplicate`` call by call,
which is the bridge's idempotency working.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent.protocol import now_ms


@dataclass
class ReplayReport:
    sent: int = 0
    duplicates: int = 0
    delivered: int = 0  #: calls the terminal's broker took
    signed: int = 0  #: sign-ins and sign-outs
    failed: list[str] = field(default_factory=list)


def read_day(path: Path) -> list[dict[str, Any]]:
    """The recorded day; a malformed line names the file and the line."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(item, dict):
            raise ValueError(f"{path}:{n}: not a JSON object")
        out.append(item)
    return out


def _when(item: dict[str, Any]) -> int | None:
    body = item.get("sign_in") or item.get("sign_out") or item
    t = body.get("called_ms", body.get("at_ms"))
    return int(t) if t is not None else None


def replay(
    items: Iterable[dict[str, Any]],
    post: Callable[[str, dict[str, Any]], httpx.Response],
    *,
    speed: float = 60.0,
    keep_times: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], int] = now_ms,
) -> ReplayReport:
    """Send each item through ``post(path, body)``, paced by the recorded times."""
    report = ReplayReport()
    items = list(items)
    times = [t for t in (_when(i) for i in items) if t is not None]
    first = min(times) if times else 0
    start = clock()
    for item in items:
        t = _when(item)
        if t is not None:
            due = start + (t - first) / speed
            if due > clock():
                sleep((due - clock()) / 1000)
        kind = "sign_in" if "sign_in" in item else "sign_out" if "sign_out" in item else "call"
        body = dict(item.get(kind, item)) if kind != "call" else dict(item)
        if not keep_times and t is not None:
            body["called_ms" if kind == "call" else "at_ms"] = clock()
        path = {"call": "/api/queue/v1/calls", "sign_in": "/api/queue/v1/sign-in"}.get(
            kind, "/api/queue/v1/sign-out"
        )
        r = post(path, body)
        if r.status_code >= 400:
            report.failed.append(
                f"{kind} {body.get('call_id', body.get('clerk_id', ''))}: "
                f"{r.status_code} {r.text[:200]}"
            )
            continue
        if kind != "call":
            report.signed += 1
            continue
        got = r.json()
        if got["duplicate"]:
            report.duplicates += 1
        else:
            report.sent += 1
            report.delivered += bool(got["sent"])
    return report


def _replay_cli(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    token = args.token_file.read_text().strip()
    items = read_day(args.file)
    with httpx.Client(
        base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        report = replay(
            items,
            lambda path, body: http.post(path, json=body),
            speed=args.speed,
            keep_times=args.keep_times,
        )
    print(
        f"{report.sent} calls sent ({report.delivered} taken by the terminals' broker), "
        f"{report.duplicates} duplicates, {report.signed} sign-ins/outs, "
        f"{len(report.failed)} failed"
    )
    for line in report.failed:
        print(f"  {line}")
    return 1 if report.failed else 0


def register(sub: Any) -> None:
    q = sub.add_parser("queue", help="queue-system bridge tools")
    qs = q.add_subparsers(dest="queue_command", required=True)
    r = qs.add_parser("replay", help="feed a recorded day of calls to the bridge")
    r.add_argument("file", type=Path, help="JSON lines: calls, sign-ins and sign-outs")
    r.add_argument("--url", default="http://127.0.0.1:8080", help="the aggregator")
    r.add_argument("--token-file", type=Path, required=True, help="a token granted 'queue'")
    r.add_argument("--speed", type=float, default=60.0, help="recorded seconds per second")
    r.add_argument("--keep-times", action="store_true", help="send the recorded times as they are")
    r.set_defaults(func=_replay_cli)
