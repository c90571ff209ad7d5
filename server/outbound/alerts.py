"""Alert push's shell: when alerts are raised, plan their messages and queue them.

``AlertPush(config)`` is one of the store's ``outbound_hooks`` (server/store/writes.py):
it is called *in the transaction that inserts alerts* — the ingest's (bad reviews, away
without the sign, faults, a terminal's last will) and the sweep's (overdue cases, silent
terminals, cameras that cannot see; ``Cases.raise_alerts``, every minute even when
nothing is new, which is when waiting alerts are summarised) — with the rows it newly
inserted. For every target of type wecom, dingtalk or smtp that takes alerts it locks
the target's row of ``alert_push_targets`` (replicas plan one at a time), reads what the
target has had (``alert_pushes``), asks ``server.policy.alert_push.plan`` what to send,
writes what each alert became and queues the messages (``queue.enqueue_many``, key
``alert:<id>`` or ``alert-summary:<digest>``). The alert, its record and its delivery
commit together or not at all; ``server/outbound/channels.py`` tells them.

A target's rules are its ``options`` in the outbound file (docs/outbound.md, "Alert
push")::

    [[target]]
    name = "qingpu-wecom"
    type = "wecom"
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    token_file = "/etc/warmwindow/qingpu-wecom.key"
    kinds = ["alert"]                 # or some of: bad_review, offline, fault, ...
    districts = ["青浦区"]
    options = { msgtype = "markdown", quiet_hours = "22:00-07:00", quiet = "hold",
                max_messages = 5, per_minutes = 10, dashboard_url = "https://ww.example/" }

A unit a district admin switched off for a target (``outbound_switches``) sends that
target no alerts at all while off (they are not kept for later: an alert is news).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import false, func, select
from sqlalchemy.dialects import postgresql, sqlite

from server.outbound.channels import SUMMARY_LISTED
from server.outbound.queue import delivery_row, enqueue_many
from server.outbound.targets import OutboundConfig, OutboundConfigError, Target
from server.policy.alert_push import (
    PUSH_KINDS,
    Fingerprint,
    Message,
    Plan,
    PushAlert,
    PushRules,
    QuietHours,
    Record,
    TargetState,
    Waiting,
    plan,
)
from server.policy.rows import AlertKind
from server.store.schema import (
    alert_push_targets,
    alert_pushes,
    away_periods,
    cases,
    devices,
    outbound_switches,
    units,
)

CHANNELS: Final = frozenset({"wecom", "dingtalk", "smtp"})
ALERT_KINDS: Final = frozenset(get_args(AlertKind))
#: The queue's ``kind`` of each message.
QUEUE_KIND: Final = {"alert": "alert", "summary": "alert_summary"}
#: What of an alert's detail a message may tell (no free text from a terminal).
DETAIL_TOLD: Final = (
    "rating",
    "code",
    "started_ms",
    "ended_ms",
    "due_ms",
    "case_id",
    "last_heard_ms",
    "sessions",
    "not_observed",
)
OPTIONS: Final = frozenset(
    {
        "msgtype",
        "dashboard_url",
        "quiet_hours",
        "quiet",
        "timezone",
        "max_messages",
        "per_minutes",
        "repeat_minutes",
        "fold_minutes",
    }
)
#: Records older than this are forgotten (the alerts table keeps the alerts themselves).
KEEP_MS: Final = 35 * 86_400_000


def takes_alerts(t: Target) -> bool:
    return t.type in CHANNELS and any(k == "alert" or k in ALERT_KINDS for k in t.kinds)


def rules_of(t: Target) -> PushRules:
    """A target's push rules from its kinds, units and ``options``; a ``ValueError``
    names the option."""
    o = t.options
    unknown = sorted(set(o) - OPTIONS)
    if unknown:
        raise ValueError(f"options.{unknown[0]}: unknown (known: {', '.join(sorted(OPTIONS))})")
    if o.get("msgtype", "markdown") not in ("markdown", "text"):
        raise ValueError("options.msgtype: markdown or text")
    if o.get("quiet", "hold") not in ("hold", "drop"):
        raise ValueError("options.quiet: hold or drop")

    def minutes(name: str, default: int, least: int) -> int:
        v = o.get(name, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise ValueError(f"options.{name}: a whole number, at least {least}")
        return v

    kinds = frozenset(k for k in t.kinds if k in ALERT_KINDS)
    if "alert" in t.kinds:
        kinds |= PUSH_KINDS
    quiet = None
    if o.get("quiet_hours"):
        try:
            mode: Literal["hold", "drop"] = "drop" if o.get("quiet") == "drop" else "hold"
            quiet = QuietHours.parse(str(o["quiet_hours"]), mode)
        except ValueError as exc:
            raise ValueError(f"options.quiet_hours: {exc}") from None
    tz = str(o.get("timezone", "Asia/Shanghai"))
    try:
        ZoneInfo(tz)
    except (KeyError, ValueError):
        raise ValueError(f"options.timezone: {tz!r} is not a time zone") from None
    return PushRules(
        target=t.name,
        sites=t.sites,
        districts=t.districts,
        kinds=kinds,
        timezone=tz,
        quiet=quiet,
        max_messages=minutes("max_messages", 5, 2),
        per_ms=minutes("per_minutes", 10, 1) * 60_000,
        repeat_ms=minutes("repeat_minutes", 10, 0) * 60_000,
        fold_ms=minutes("fold_minutes", 1, 0) * 60_000,
    )


def push_rules(config: OutboundConfig) -> list[PushRules]:
    """The rules of every enabled alerting target; ``OutboundConfigError`` names the
    file, the target and the option when one is wrong."""
    out: list[PushRules] = []
    problems: list[str] = []
    for i, t in enumerate(config.targets.values()):
        if not (t.enabled and takes_alerts(t)):
            continue
        try:
            out.append(rules_of(t))
        except ValueError as exc:
            problems.append(f"{config.path}: target[{i}] ({t.name}): {exc}")
    if problems:
        raise OutboundConfigError(problems)
    return sorted(out, key=lambda r: r.target)


def _alert(row: Mapping[str, Any], clerk: str | None) -> PushAlert:
    detail = row.get("detail") or {}
    return PushAlert(
        alert_id=str(row["alert_id"]),
        site=str(row["site"]),
        window=str(row["window"]),
        kind=str(row["kind"]),
        ts_ms=int(row["ts_ms"]),
        clerk_id=clerk or detail.get("clerk_id"),
        detail={k: detail[k] for k in DETAIL_TOLD if k in detail},
    )


def _clerks(conn: Any, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The clerk (staff id) behind each alert that has one: a bad review's case, an
    absence's period (the rows this transaction stored)."""
    out: dict[str, str] = {}
    reviews = [str(r["alert_id"]) for r in rows if r["kind"] == "bad_review"]
    if reviews:
        q = select(cases.c.case_id, cases.c.clerk_id).where(cases.c.case_id.in_(reviews))
        out |= {str(c.case_id): str(c.clerk_id) for c in conn.execute(q) if c.clerk_id}
    aways = {
        (str(r["site"]), str(r["window"]), int(r["detail"]["started_ms"])): str(r["alert_id"])
        for r in rows
        if r["kind"] == "away_without_sign" and (r.get("detail") or {}).get("started_ms")
    }
    if aways:
        a = away_periods
        q2 = select(a.c.site, a.c.window, a.c.started_ms, a.c.clerk_id).where(
            a.c.site.in_({s for s, _, _ in aways}),
            a.c.started_ms.in_({t for _, _, t in aways}),
        )
        for p in conn.execute(q2):
            alert_id = aways.get((p.site, p.window, int(p.started_ms)))
            if alert_id and p.clerk_id:
                out[alert_id] = str(p.clerk_id)
    return out


class AlertPush:
    """The hook; ``clock`` is the time the plan runs at (tests pass their own)."""

    def __init__(
        self,
        config: OutboundConfig,
        *,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.rules = push_rules(config)
        self._clock = clock
        #: Since this process started: messages queued by kind, alerts by what they became.
        self.queued = {"alert": 0, "summary": 0}
        self._forgot_hour = -1

    def __call__(self, conn: Any, inserted: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        """An ``outbound_hooks`` entry: plan for the alerts in ``inserted`` (also for none
        when the key is there, as the sweep passes it: what waits may be due)."""
        if "alerts" not in inserted or not self.rules:
            return 0
        return self.push(conn, inserted["alerts"], self._clock())

    def push(self, conn: Any, rows: Sequence[Mapping[str, Any]], now_ms: int) -> int:
        """Plan and queue in ``conn``'s transaction; return how many messages were queued."""
        _lock(conn, [r.target for r in self.rules], now_ms)
        if now_ms // 3_600_000 != self._forgot_hour:  # hourly: the old records go
            self._forgot_hour = now_ms // 3_600_000
            forget(conn, now_ms)
        clerks = _clerks(conn, rows)
        new = [_alert(r, clerks.get(str(r["alert_id"]))) for r in rows]
        off = _switched_off(conn, {a.site for a in new})
        ids = [a.alert_id for a in new]
        messages: list[Message] = []
        records: list[Record] = []
        for r in self.rules:
            mine = [a for a in new if (r.target, a.site) not in off]
            state = _state(conn, r, now_ms, ids)
            if not mine and not state.waiting:
                continue
            districts = _districts(conn, {a.site for a in mine})
            got = plan(now_ms, mine, [r], {r.target: state}, districts)
            messages += got.messages
            records += got.records
        _record(conn, records)
        return self._enqueue(conn, Plan(tuple(messages), tuple(records)), now_ms)

    def _enqueue(self, conn: Any, done: Plan, now_ms: int) -> int:
        if not done.messages:
            return 0
        sites = {a.site for m in done.messages for a in m.alerts}
        names, labels = _names(conn, sites)
        tz = {r.target: r.timezone for r in self.rules}
        rows = []
        for m in done.messages:
            body = message_body(m, tz[m.target], names, labels)
            only = {a.site for a in m.alerts}
            rows.append(
                delivery_row(
                    target=m.target,
                    key=m.key,
                    kind=QUEUE_KIND[m.kind],
                    body=body,
                    at_ms=now_ms,
                    site=next(iter(only)) if len(only) == 1 else None,
                )
            )
            self.queued[m.kind] += 1
        return enqueue_many(conn, rows)


def message_body(
    m: Message,
    tz: str,
    centres: Mapping[str, str],
    labels: Mapping[tuple[str, str], str],
) -> dict[str, Any]:
    """What the queue keeps for a message (``channels`` tells it): data, no text, no image."""

    def told(a: PushAlert) -> dict[str, Any]:
        return {
            "alert_id": a.alert_id,
            "site": a.site,
            "centre": centres.get(a.site, a.site),
            "window": a.window,
            "window_label": labels.get((a.site, a.window)),
            "kind": a.kind,
            "ts_ms": a.ts_ms,
            "clerk_id": a.clerk_id,
            "detail": dict(a.detail),
        }

    body: dict[str, Any] = {"v": 1, "type": m.kind, "reason": m.reason, "tz": tz}
    body["count"] = len(m.alerts)
    if m.kind == "alert":
        return body | {"alerts": [told(m.alerts[0])]}
    per_centre: dict[str, int] = {}
    for a in m.alerts:
        name = centres.get(a.site, a.site)
        per_centre[name] = per_centre.get(name, 0) + 1
    return body | {
        "counts": m.counts(),
        "centres": dict(sorted(per_centre.items(), key=lambda kv: (-kv[1], kv[0]))),
        "first_ms": min(a.ts_ms for a in m.alerts),
        "last_ms": max(a.ts_ms for a in m.alerts),
        "alerts": [told(a) for a in m.alerts[-SUMMARY_LISTED:]],
    }


# ------------------------------------------------------------------------ the tables


def _insert(conn: Any) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _lock(conn: Any, targets: Iterable[str], now_ms: int) -> None:
    """Take the targets' rows (sorted, so two planners never wait on each other in a
    circle); held until the caller's COMMIT."""
    ins = _insert(conn)(alert_push_targets)
    stmt = ins.on_conflict_do_update(
        index_elements=["target"], set_={"planned_ms": ins.excluded.planned_ms}
    )
    for t in sorted(targets):
        conn.execute(stmt, {"target": t, "planned_ms": now_ms})


def _switched_off(conn: Any, sites: set[str]) -> set[tuple[str, str]]:
    if not sites:
        return set()
    s = outbound_switches
    q = select(s.c.target, s.c.site).where(s.c.site.in_(sites), s.c.enabled == false())
    return {(r.target, r.site) for r in conn.execute(q)}


def _districts(conn: Any, sites: set[str]) -> dict[str, str]:
    if not sites:
        return {}
    q = select(units.c.site, units.c.district).where(units.c.site.in_(sites))
    return {r.site: r.district for r in conn.execute(q)}


def _names(conn: Any, sites: set[str]) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    names = {
        r.site: r.name
        for r in conn.execute(select(units.c.site, units.c.name).where(units.c.site.in_(sites)))
    }
    q = select(devices.c.site, devices.c.window, devices.c.label).where(devices.c.site.in_(sites))
    return names, {(r.site, r.window): r.label for r in conn.execute(q)}


def _state(conn: Any, r: PushRules, now_ms: int, ids: Sequence[str]) -> TargetState:
    p = alert_pushes
    mine = p.c.target == r.target
    sent = conn.execute(
        select(p.c.message_key, func.min(p.c.message_ms))
        .where(mine, p.c.message_key.is_not(None), p.c.message_ms > now_ms - r.per_ms)
        .group_by(p.c.message_key)
    ).all()
    last: dict[Fingerprint, int] = {
        (x.site, x.window, x.kind): int(x.at)
        for x in conn.execute(
            select(p.c.site, p.c.window, p.c.kind, func.max(p.c.message_ms).label("at"))
            .where(mine, p.c.state == "sent", p.c.message_ms > now_ms - r.repeat_ms)
            .group_by(p.c.site, p.c.window, p.c.kind)
        )
    }
    known: set[str] = set()
    for i in range(0, len(ids), 500):
        q = select(p.c.alert_id).where(mine, p.c.alert_id.in_(ids[i : i + 500]))
        known |= {str(x.alert_id) for x in conn.execute(q)}
    waiting = tuple(
        Waiting(
            PushAlert(x.alert_id, x.site, x.window, x.kind, int(x.ts_ms), x.clerk_id),
            int(x.since_ms),
            "held" if x.state == "held" else "folded",
        )
        for x in conn.execute(
            select(p).where(mine, p.c.state.in_(("folded", "held"))).order_by(p.c.since_ms)
        )
    )
    return TargetState(
        sent_ms=tuple(int(at) for _, at in sent),
        last_sent=last,
        known=frozenset(known),
        waiting=waiting,
    )


def _record(conn: Any, records: Sequence[Record]) -> None:
    if not records:
        return
    ins = _insert(conn)(alert_pushes)
    stmt = ins.on_conflict_do_update(
        index_elements=["target", "alert_id"],
        set_={
            "state": ins.excluded.state,
            "message_key": ins.excluded.message_key,
            "message_ms": ins.excluded.message_ms,
        },
    )
    conn.execute(
        stmt,
        [
            {
                "target": x.target,
                "alert_id": x.alert.alert_id,
                "site": x.alert.site,
                "window": x.alert.window,
                "kind": x.alert.kind,
                "ts_ms": x.alert.ts_ms,
                "clerk_id": x.alert.clerk_id,
                "state": x.state,
                "since_ms": x.at_ms,
                "message_key": x.key,
                "message_ms": x.at_ms if x.key else None,
            }
            for x in records
        ],
    )


def forget(conn: Any, now_ms: int) -> int:
    """Drop the records of alerts settled longer ago than ``KEEP_MS``."""
    p = alert_pushes
    res = conn.execute(
        p.delete().where(
            p.c.state.in_(("sent", "summarised", "dropped")), p.c.since_ms < now_ms - KEEP_MS
        )
    )
    return int(res.rowcount or 0)
