"""The one place where a request's principal meets the store.

Every route reads and changes data through an ``Access`` bound to the request's
principal (``AccessDep``); no route is handed the store itself, so none can forget the
scope (``tests/server/test_access_matrix.py`` checks both: every route of the app against
every kind of principal, and that no route depends on the bare store).

The rules, applied here and nowhere else:

* an explicit ``site=`` / ``district=`` outside the principal's units answers 403;
* an object id (alert, case, clerk) outside them answers 404, as if it did not exist;
* a principal bound to a clerk (``clerk_id``) reads only that clerk's records;
* a service token reads only with the ``read`` grant and changes only what it is granted;
* every change is audited with the unit it concerns, and the audit is scoped the same way.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request
from sqlalchemy import delete, or_, select, update

from agent.overrides import check_fields
from agent.protocol import now_ms
from server import reports, settings_push, views
from server.accounts import CAN, Accounts, Principal, scope_sites, write_audit
from server.api.deps import AccountsDep, PrincipalDep, ServerSettings, SettingsDep, acting, bounds
from server.metrics.assessment import decided_probation, probation, standing, verdict
from server.metrics.measures import GroupBy, Measures, Scope, compute, smile_star_ranking
from server.metrics.periods import previous_month
from server.outbound import queue as outbound_queue
from server.outbound import targets as outbound_targets
from server.policy import casework
from server.policy.rows import UNOBSERVED
from server.policy.shifts import ShiftConflict, Source
from server.policy.thresholds import (
    PassThresholds,
    Resolved,
    ThresholdsError,
    check_version,
    resolve,
    scopes_of,
)
from server.policy.window_settings import reaches as reaches_window
from server.policy.window_settings import site_of as settings_site_of
from server.policy.window_settings import valid_scope as valid_settings_scope
from server.store.assessment import (
    CORRECTABLE,
    NOT_COUNTED,
    add_appeal,
    add_finding,
    add_probation_decision,
    add_threshold_version,
    add_verdict_decision,
    appeal_row,
    appeal_rows,
    correct_session,
    correction_rows,
    finding_rows,
    probation_decision_rows,
    resolve_appeal,
    session_row,
    threshold_history,
    threshold_versions,
    withdraw_finding,
)
from server.store.calls import call_cmd_id
from server.store.cases import acknowledge, case_history, case_row, take_step
from server.store.credentials import CredentialError, clear_credentials
from server.store.db import Store
from server.store.people import SignedIn
from server.store.schema import (
    alerts,
    appeals,
    audit_log,
    auth_sessions,
    clerks,
    devices,
    events,
    findings,
    outbound_deliveries,
    outbound_status,
    outbound_switches,
    units,
    users,
)

OUTSIDE = "outside your units"
#: How far ahead of the server's clock a sign-in's time may be (terminal clocks drift).
CLOCK_SKEW_MS = 120_000
CLERK_ONLY = "a clerk account reads only its own records"
#: How far past a session's end a finding's video time may point (the recording runs on).
VIDEO_SLACK_MS = 120_000


def local_day(at_ms: int, tz: str) -> str:
    return datetime.fromtimestamp(at_ms / 1000, ZoneInfo(tz)).date().isoformat()


@dataclass(frozen=True)
class Period:
    """A checked period string and its UTC bounds."""

    name: str
    start_ms: int
    end_ms: int


class Access:
    """What one principal may read and change, and nothing more."""

    def __init__(
        self, principal: Principal, store: Store, accounts: Accounts, settings: ServerSettings
    ) -> None:
        self.p = principal
        self.store = store
        self.accounts = accounts
        self.settings = settings
        self._e = store.engine

    # ------------------------------------------------------------- checks

    def period(self, name: str) -> Period:
        start, end = bounds(self.settings, name)
        return Period(name, start, end)

    def month(self, name: str) -> Period:
        """A month (YYYY-MM): what a verdict, a sign-off or an appeal is about; 422 else."""
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", name):
            raise HTTPException(422, f"month: a verdict is a month's, YYYY-MM, not {name!r}")
        return self.period(name)

    def site(self, site: str | None) -> None:
        """An explicit site outside the principal's units: 403."""
        if site is not None and not self.p.sees(site):
            raise HTTPException(403, OUTSIDE)

    def not_clerk(self) -> None:
        """Whole-unit reads (hall, alerts, fleet) are not for a clerk-bound principal."""
        if self.p.clerk_id is not None:
            raise HTTPException(403, CLERK_ONLY)

    def sites(self, site: str | None = None) -> frozenset[str] | None:
        """The sites a read covers: the explicit one (checked) or all the principal's."""
        self.site(site)
        return frozenset({site}) if site is not None else self.p.sites

    def clerk_home(self, clerk_id: str) -> str:
        """The clerk's centre; 404 when the clerk is unknown or outside the scope."""
        home = self.store.clerk_site(clerk_id)
        if home is None or not self.p.sees(home):
            raise HTTPException(404, "no such clerk")
        if self.p.clerk_id is not None and clerk_id != self.p.clerk_id:
            raise HTTPException(404, "no such clerk")
        return home

    def scope(
        self,
        district: str | None = None,
        site: str | None = None,
        window: str | None = None,
        clerk_id: str | None = None,
    ) -> Scope:
        """The request's scope, narrowed to what the principal may see."""
        self.site(site)
        p = self.p
        if district is not None and p.sites is not None:
            with self._e.connect() as conn:
                in_district = scope_sites(conn, f"district:{district}") or frozenset()
            if not in_district or not in_district <= p.sites:
                raise HTTPException(403, OUTSIDE)
        if p.clerk_id is not None:
            clerk_id = clerk_id or p.clerk_id
        if clerk_id is not None:
            self.clerk_home(clerk_id)
        if p.sites is not None and site is None and clerk_id is None and district is None:
            if p.scope.startswith("district:"):
                district = p.scope.removeprefix("district:")
            else:
                site = next(iter(sorted(p.sites)), "-")
        return Scope(district, site, window, clerk_id)

    def _audit(
        self,
        conn: Any,
        action: str,
        target: str | None,
        detail: Any = None,
        site: str | None = None,
    ) -> None:
        write_audit(conn, self.p.username, action, target, detail, site)

    def audit(
        self, action: str, target: str | None, detail: Any = None, site: str | None = None
    ) -> None:
        with self._e.begin() as conn:
            self._audit(conn, action, target, detail, site)

    # ------------------------------------------------------------- reads: units and hall

    def units(self) -> list[dict[str, Any]]:
        return views.site_units(self._e, self.p.sites)

    def hall(self, site: str) -> list[dict[str, Any]]:
        self.site(site)
        self.not_clerk()
        now = now_ms()
        day = bounds(self.settings, local_day(now, self.settings.timezone))
        return views.hall(self._e, site, day, now)

    def windows(self, site: str | None) -> list[dict[str, Any]]:
        sites = self.sites(site)
        return [w for w in self.store.windows(site) if sites is None or w["site"] in sites]

    def latest_events(self, limit: int, site: str | None) -> list[dict[str, Any]]:
        self.not_clerk()
        return self.store.latest_events(limit, sites=self.sites(site))

    def stats(self) -> dict[str, Any]:
        """Stored events in the principal's units; reject counters (not attributable to a
        unit: unknown devices, bad topics) only for city-wide principals."""
        self.not_clerk()
        rejected = self.store.reject_counts() if self.p.sites is None else None
        return {"events": self.store.event_count(self.p.sites), "rejected": rejected}

    def fleet(self) -> list[dict[str, Any]]:
        self.not_clerk()
        return views.fleet(self._e, self.p.sites)

    def gaps(self) -> list[dict[str, Any]]:
        self.not_clerk()
        return [g for g in self.store.sequence_gaps() if self.p.sees(str(g["site"]))]

    # ------------------------------------------------------------- reads: measures

    def measures(
        self, scope: Scope, period: Period, group_by: GroupBy | None = None
    ) -> dict[str | None, Measures]:
        return compute(self._e, scope, period.start_ms, period.end_ms, group_by=group_by)

    def timeline(self, scope: Scope, period: Period) -> list[dict[str, Any]]:
        return views.timeline(self._e, scope, period.start_ms, period.end_ms)

    def trend(self, scope: Scope, period: Period) -> list[dict[str, Any]]:
        return views.trend(self._e, scope, period.start_ms, period.end_ms, self.settings.timezone)

    def heatmap(self, scope: Scope, period: Period) -> list[dict[str, Any]]:
        return views.heatmap(self._e, scope, period.start_ms, period.end_ms, self.settings.timezone)

    def ranking(self, scope: Scope, period: Period, min_sessions: int = 20) -> list[dict[str, Any]]:
        rows = smile_star_ranking(
            self._e,
            scope,
            period.start_ms,
            period.end_ms,
            min_sessions=min_sessions,
            too_broad_counts=self._scope_thresholds(scope, period).too_broad_counts,
        )
        if self.p.clerk_id is not None:
            return [r for r in rows if r["clerk_id"] == self.p.clerk_id]
        return rows

    def _scope_thresholds(self, scope: Scope, period: Period) -> PassThresholds:
        """The thresholds of a ranking's scope in the period's last month: its centre's,
        else its district's, else the city's (a clerk's: its centre's)."""
        month = local_day(period.end_ms - 1, self.settings.timezone)[:7]
        site = scope.site or (self.clerk_home(scope.clerk_id) if scope.clerk_id else None)
        with self._e.connect() as conn:
            district = self._district_of(conn, site) if site else scope.district
            chain = [s for s in scopes_of(site or "", district) if site or s != "site:"]
            versions = threshold_versions(conn, chain)
        return resolve(self.settings.thresholds, versions, month, site or "", district).thresholds

    def verdict(self, clerk_id: str, month: str) -> dict[str, Any]:
        return self.judged(clerk_id, month)

    def probation(self, clerk_id: str, month: str) -> dict[str, Any]:
        return self.probation_view(clerk_id, month)

    def clerks(self, site: str | None = None, district: str | None = None) -> list[dict[str, Any]]:
        """Clerks of the scope (a clerk-bound principal: only itself)."""
        if district is not None:
            scope = self.scope(district=district)
            rows = self.store.clerks(None, scope.district)
        else:
            self.site(site)
            rows = self.store.clerks(site, None)
        return [
            c for c in rows if self.p.sees(c["site"]) and self.p.clerk_id in (None, c["clerk_id"])
        ]

    def assessments(self, month: str, site: str | None) -> list[dict[str, Any]]:
        self.month(month)
        scope = self.scope(site=site)
        out = []
        clerk_rows = self.clerks(scope.site, scope.district if scope.site is None else None)
        with self._e.connect() as conn:
            open_appeals = {
                a["clerk_id"]
                for a in appeal_rows(conn, sites=self.p.sites, status="open", month=month)
            }
        for clerk in clerk_rows:
            v = self.judged(clerk["clerk_id"], month)
            pr = self.probation_view(clerk["clerk_id"], month, current=v)
            st = v["standing"]
            out.append(
                clerk
                | {
                    "result": st["result"],
                    "computed_result": st["computed_result"],
                    "sign_off": st["sign_off"],
                    "failures": v["failures"],
                    "criteria": v["criteria"],
                    "probation": pr["status"],
                    "probation_decided": pr["decided"],
                    "measures": v["measures"],
                    "findings": sum(f["withdrawn_ms"] is None for f in v["findings"]),
                    "open_appeals": int(clerk["clerk_id"] in open_appeals),
                }
            )
        return out

    # ------------------------------------------------------------- reads: alerts, cases, KPIs

    def alerts(
        self, site: str | None, open_only: bool = False, limit: int = 200, since_ms: int = 0
    ) -> list[dict[str, Any]]:
        self.not_clerk()
        return self.store.list_alerts(
            self.sites(site), open_only=open_only, since_ms=since_ms, limit=limit
        )

    def cases(self, status: str | None, site: str | None) -> list[dict[str, Any]]:
        return self.store.list_cases(status, sites=self.sites(site), clerk_id=self.p.clerk_id)

    def helpdesk(self, first_day: str, last_day: str, site: str | None) -> dict[str, Any]:
        self.not_clerk()
        return self.store.helpdesk_summary(first_day, last_day, self.sites(site))

    def audit_entries(self, limit: int, site: str | None = None) -> list[dict[str, Any]]:
        """Audit entries about the principal's units, and the principal's own actions;
        entries about no unit (accounts, tokens) only for city-wide principals."""
        self.not_clerk()
        sites = self.sites(site)
        q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if site is not None:
            q = q.where(audit_log.c.site == site)
        elif sites is not None:
            q = q.where(or_(audit_log.c.site.in_(sites), audit_log.c.username == self.p.username))
        with self._e.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # ------------------------------------------------------------- case workflow (issue 17.4)
    # A bad-review case from assignment to close, and reopened: assign it to a user of
    # the centre, record the call-back to the citizen and the rectification, close it
    # (both recorded), reopen it with a reason. The rules are server/policy/casework.py;
    # every step is a case_actions row and an audit entry in one transaction, at the
    # server's clock. A clerk-bound principal reads its own clerk's cases and nothing
    # else (404 for another's); the steps need the "close_case" permission.

    def _clock(self, row: dict[str, Any], at_ms: int) -> dict[str, Any]:
        tz = row.get("tz") or self._zones().get(row["site"]) or self.settings.timezone
        c = casework.clock(at_ms, row["status"], row["due_ms"], tz)
        return c._asdict()

    def _zones(self) -> dict[str, str]:
        with self._e.connect() as conn:
            rows = conn.execute(select(units.c.site, units.c.timezone))
            return {r.site: r.timezone for r in rows}

    def case_list(self, status: str | None, site: str | None) -> list[dict[str, Any]]:
        """The principal's cases by due time with their clock; ``status`` "open",
        "overdue" (open and past due), "closed" or None (all)."""
        at = now_ms()
        rows = self.store.list_cases(
            "open" if status == "overdue" else status,
            sites=self.sites(site),
            clerk_id=self.p.clerk_id,
            due_before_ms=at if status == "overdue" else None,
        )
        zones = self._zones()
        return [r | self._clock(r | {"tz": zones.get(r["site"])}, at) for r in rows]

    def _case(self, conn: Any, case_id: str) -> dict[str, Any]:
        """The case; 404 outside the scope, and for a clerk-bound principal another
        clerk's case (the same answer as no such case)."""
        row = case_row(conn, case_id)
        if row is None or not self.p.sees(row["site"]):
            raise HTTPException(404, "no such case")
        if self.p.clerk_id is not None and row["clerk_id"] != self.p.clerk_id:
            raise HTTPException(404, "no such case")
        return row

    def case(self, case_id: str) -> dict[str, Any]:
        """One case with its clock, what a close still needs, its history and (for a
        principal who works cases) the users it can be assigned to."""
        with self._e.connect() as conn:
            row = self._case(conn, case_id)
            history = case_history(conn, case_id)
            assignable = self._assignable(conn, row["site"]) if self.p.can("close_case") else []
        state = casework.CaseState(row["status"], row["callback_ms"], row["rectification"])
        return (
            {k: v for k, v in row.items() if k != "tz"}
            | self._clock(row, now_ms())
            | {
                "missing_to_close": casework.missing_to_close(state),
                "actions": history,
                "assignable": assignable,
            }
        )

    def _assignable(self, conn: Any, site: str) -> list[dict[str, Any]]:
        """The active users who see ``site`` and may work its cases: the centre's own
        first, then the district's and the city's."""
        q = (
            select(users.c.username, users.c.display_name, users.c.role, users.c.scope)
            .where(users.c.role.in_(sorted(CAN["close_case"])), users.c.disabled.is_(False))
            .order_by(users.c.username)
        )
        out = []
        for r in conn.execute(q):
            reach = scope_sites(conn, r.scope)
            if reach is None or site in reach:
                out.append(dict(r._mapping))
        out.sort(key=lambda u: (u["scope"] != f"site:{site}", u["scope"] != "all"))
        return out

    def _step(
        self,
        case_id: str,
        step: casework.Step,
        note: str | None,
        detail: dict[str, Any] | None = None,
        check: Callable[[Any, dict[str, Any]], None] | None = None,
        **given: Any,
    ) -> int:
        """Take one step on a case (the rules' refusal answers 409 in words); the time
        it was taken, by the server's clock."""
        at = now_ms()
        with self._e.begin() as conn:
            row = self._case(conn, case_id)
            state = casework.CaseState(row["status"], row["callback_ms"], row["rectification"])
            why = casework.refusal(state, step)
            if why is not None:
                raise HTTPException(409, why)
            if check is not None:
                check(conn, row)
            values = casework.step_values(step, self.p.username, at, note=note, **given)
            if not take_step(conn, row, step, values, self.p.username, at, note, detail):
                raise HTTPException(409, "the case changed meanwhile: look again")
            self._audit(conn, f"case_{step}", case_id, (detail or {}) | {"note": note}, row["site"])
        return at

    def assign_case(self, case_id: str, username: str, note: str | None) -> int:
        """Assign the case to a user of its centre (one who sees it and works cases)."""

        def check(conn: Any, row: dict[str, Any]) -> None:
            if username not in {u["username"] for u in self._assignable(conn, row["site"])}:
                raise HTTPException(
                    422,
                    f"assigned_to: {username} is not an active user of this centre who works cases",
                )

        detail = {"assigned_to": username}
        return self._step(case_id, "assign", note, detail, check, assigned_to=username)

    def record_callback(
        self, case_id: str, called_ms: int, outcome: casework.CallbackOutcome, note: str | None
    ) -> int:
        """The call-back to the citizen: when it was made (not before the review, not in
        the future), whether the citizen was reached and satisfied."""

        def check(conn: Any, row: dict[str, Any]) -> None:
            if called_ms < row["opened_ms"]:
                raise HTTPException(422, "at_ms: a call-back cannot be before the review")
            if called_ms > now_ms() + CLOCK_SKEW_MS:
                raise HTTPException(422, "at_ms: a call-back cannot be in the future")

        detail = {"called_ms": called_ms, "outcome": outcome}
        return self._step(
            case_id, "callback", note, detail, check, callback_ms=called_ms, outcome=outcome
        )

    def record_rectification(self, case_id: str, note: str) -> int:
        """What the centre did about the review."""
        return self._step(case_id, "rectify", note)

    def close_case(self, case_id: str, note: str) -> int:
        """Close the case now (the server's clock): only with a call-back and a
        rectification recorded (409 naming what is missing); the time it was closed."""
        return self._step(case_id, "close", note)

    def reopen_case(self, case_id: str, reason: str) -> int:
        """Reopen a closed case with a reason; its rectification is to be recorded again."""
        return self._step(case_id, "reopen", reason)

    # ------------------------------------------------------------- changes

    def _site_of(self, conn: Any, key: Any, value: str, what: str) -> str:
        """The site of the row whose ``key`` column is ``value``; 404 when there is no
        such row or it lies outside the scope (the same answer: no existence leak)."""
        row = conn.execute(select(key.table.c.site).where(key == value)).first()
        if row is None or not self.p.sees(row.site):
            raise HTTPException(404, f"no such {what}")
        return str(row.site)

    def ack_alert(self, alert_id: str, note: str) -> None:
        with self._e.begin() as conn:
            site = self._site_of(conn, alerts.c.alert_id, alert_id, "alert")
            if not acknowledge(conn, alert_id, self.p.username, note, now_ms()):
                raise HTTPException(409, "already acknowledged")
            self._audit(conn, "ack_alert", alert_id, {"note": note}, site)

    def add_clerk(self, clerk_id: str, name: str, site: str) -> bool:
        """Register a clerk at a centre, or rename one of that centre's clerks; True when new.

        A clerk id belongs to one centre: an id already used elsewhere is refused (409),
        never silently moved; moving is ``transfer_clerk``."""
        self.site(site)
        with self._e.begin() as conn:
            if conn.execute(select(units.c.site).where(units.c.site == site)).first() is None:
                raise HTTPException(404, "no such unit")  # a clerk of no centre reads nowhere
            row = conn.execute(
                select(clerks.c.site, clerks.c.name).where(clerks.c.clerk_id == clerk_id)
            ).first()
            if row is not None and row.site != site:
                raise HTTPException(
                    409, "clerk id already in use at another centre; transfer it explicitly"
                )
            if row is None:
                conn.execute(clerks.insert().values(clerk_id=clerk_id, name=name, site=site))
                self._audit(conn, "add_clerk", clerk_id, {"name": name}, site)
            elif row.name != name:
                conn.execute(update(clerks).where(clerks.c.clerk_id == clerk_id).values(name=name))
                self._audit(conn, "rename_clerk", clerk_id, {"name": name, "was": row.name}, site)
            return row is None

    def transfer_clerk(self, clerk_id: str, to_site: str) -> str:
        """Move a clerk to another centre: only a principal that sees both (audited in both)."""
        home = self.clerk_home(clerk_id)
        self.site(to_site)
        with self._e.begin() as conn:
            if conn.execute(select(units.c.site).where(units.c.site == to_site)).first() is None:
                raise HTTPException(404, "no such unit")
            if home == to_site:
                raise HTTPException(409, "the clerk is already at that centre")
            conn.execute(update(clerks).where(clerks.c.clerk_id == clerk_id).values(site=to_site))
            clear_credentials(conn, clerk_id)  # salted for the old centre: enrol again
            # the clerk's own account goes with it (its sessions carried the old scope)
            moved = [
                r.username
                for r in conn.execute(select(users.c.username).where(users.c.clerk_id == clerk_id))
            ]
            if moved:
                conn.execute(
                    update(users).where(users.c.username.in_(moved)).values(scope=f"site:{to_site}")
                )
                conn.execute(delete(auth_sessions).where(auth_sessions.c.username.in_(moved)))
            detail = {"from": home, "to": to_site, "accounts": moved}
            self._audit(conn, "transfer_clerk", clerk_id, detail, home)
            self._audit(conn, "transfer_clerk", clerk_id, detail, to_site)
        return home

    def _window(self, site: str, window: str) -> None:
        """404 unless the centre has that window."""
        with self._e.connect() as conn:
            known = conn.execute(
                select(devices.c.window).where(devices.c.site == site, devices.c.window == window)
            ).first()
        if known is None:
            raise HTTPException(404, "no such window")

    def sign_in(
        self,
        clerk_id: str,
        site: str,
        window: str,
        start_ms: int | None,
        end_ms: int | None,
        source: Source = "manager",
    ) -> SignedIn:
        """Sign a clerk of this centre in at one of its windows, by the attribution rule
        (``server.policy.shifts``): from ``start_ms`` (default now). A conflict is 409
        with the rule's reason; a repeated sign-in changes nothing."""
        self.site(site)
        home = self.clerk_home(clerk_id)
        if home != site:
            raise HTTPException(409, "the clerk belongs to another centre; transfer first")
        self._window(site, window)
        now = now_ms()
        start = now if start_ms is None else start_ms
        if start > now + CLOCK_SKEW_MS or (end_ms is not None and end_ms > now + CLOCK_SKEW_MS):
            raise HTTPException(422, "a sign-in cannot be recorded for the future")
        try:
            done = self.store.sign_in(
                clerk_id,
                site,
                window,
                start,
                end_ms,
                source=source,
                recorded_by=self.p.username,
                recorded_ms=now,
            )
        except ShiftConflict as exc:
            raise HTTPException(409, str(exc)) from None
        if not done.noop:
            self.audit(
                "sign_in",
                f"{site}/{window}",
                {
                    "clerk_id": clerk_id,
                    "source": source,
                    "asked_from_ms": start,
                    "start_ms": done.start_ms,
                    "end_ms": done.end_ms,
                    "closed_shifts": [list(c) for c in done.closed],
                    "sessions_taken": done.sessions_taken,
                },
                site,
            )
        return done

    def sign_out(
        self,
        site: str,
        window: str | None,
        clerk_id: str | None,
        at_ms: int | None,
        source: Source = "manager",
    ) -> tuple[str, str, int]:
        """End the shift at a window (or a clerk's, wherever it is); ``(clerk, window, at)``."""
        self.site(site)
        if clerk_id is not None and self.clerk_home(clerk_id) != site:
            raise HTTPException(404, "no such clerk")
        if window is not None:
            self._window(site, window)
        now = now_ms()
        at = now if at_ms is None else at_ms
        if at > now + CLOCK_SKEW_MS:
            raise HTTPException(422, "a sign-out cannot be recorded for the future")
        try:
            clerk, where = self.store.sign_out(
                site, at, window=window, clerk_id=clerk_id, source=source
            )
        except ShiftConflict as exc:
            raise HTTPException(409, str(exc)) from None
        self.audit(
            "sign_out", f"{site}/{where}", {"clerk_id": clerk, "at_ms": at, "source": source}, site
        )
        return clerk, where, at

    def queue_call(self, call: dict[str, Any]) -> tuple[bool, bool]:
        """Store a queue call once (False: seen before, nothing done) and, when it names
        a clerk who is not on shift at that window, sign them in (source queue) from the
        call's time, first: a sign-in the rule refuses (409) stores nothing, so the queue
        system's retry is not taken for a duplicate. ``(stored, signed_in)``."""
        site, window = call["site"], call["window"]
        self.site(site)
        self._window(site, window)
        seen = self.store.call(call["call_id"])
        if seen is not None:
            if seen["site"] != site:
                raise HTTPException(409, "that call id is another centre's")
            return False, False
        clerk = call.get("clerk_id")
        if clerk is not None and self.clerk_home(clerk) != site:
            raise HTTPException(409, "the clerk belongs to another centre")
        signed_in = False
        if (
            clerk is not None
            and views.clerks_on_duty(self._e, site, call["called_ms"]).get(window) != clerk
        ):
            done = self.sign_in(clerk, site, window, call["called_ms"], None, source="queue")
            signed_in = not done.noop
        row = call | {
            "received_ms": now_ms(),
            "cmd_id": str(call_cmd_id(call["call_id"])),
            "sent": False,
            "token": self.p.username[:64],
        }
        if not self.store.add_call(row):  # the same call, at the same moment: one is stored
            return False, False
        self.audit("queue_call", f"{site}/{window}", {"call_id": call["call_id"]}, site)
        return True, signed_in

    def call_sent(self, call_id: str) -> None:
        """The terminal's broker took a stored call (one of this principal's, just made)."""
        call = self.store.call(call_id)
        if call is None or not self.p.sees(call["site"]):
            raise HTTPException(404, "no such call")
        self.store.mark_call_sent(call_id)

    def window_commands(self, site: str, window: str) -> int:
        """The Command version a window's terminal takes (its retained state says; 1 when
        it has not said)."""
        for w in self.store.windows(site):
            if w["window"] == window:
                state = w.get("state") or {}
                return int(state.get("commands", 1))
        return 1

    def set_credentials(
        self, clerk_id: str, badges: list[str], pin: str | None
    ) -> tuple[int, bool]:
        """Enrol a clerk's badges and PIN (digests only; audited without the values)."""
        site = self.clerk_home(clerk_id)
        try:
            done = self.store.set_credentials(
                clerk_id, site, badges=badges, pin=pin, by=self.p.username
            )
        except CredentialError as exc:
            raise HTTPException(409 if "another" in str(exc) else 422, str(exc)) from None
        self.audit(
            "set_credentials",
            clerk_id,
            {"badges": done[0], "pin": done[1]},
            site,
        )
        return done

    def roster(self, site: str, day: str) -> dict[str, Any]:
        """A centre's day: the shifts (with their sources), the planned roster, who was
        rostered but never signed in, and each window's unattributed sessions."""
        self.site(site)
        self.not_clerk()
        pd = self.period(day)
        return views.roster_day(self._e, site, pd.start_ms, pd.end_ms, now_ms())

    def plan_roster(self, site: str, window: str, clerk_id: str, from_ms: int, to_ms: int) -> None:
        self.site(site)
        if self.clerk_home(clerk_id) != site:
            raise HTTPException(409, "the clerk belongs to another centre; transfer first")
        self._window(site, window)
        self.store.plan_roster(site, window, clerk_id, from_ms, to_ms, self.p.username)
        self.audit(
            "plan_roster",
            f"{site}/{window}",
            {"clerk_id": clerk_id, "from_ms": from_ms, "to_ms": to_ms},
            site,
        )

    def put_kpis(
        self, site: str, window: str, day: str, requests: int, fast: int, resolved: int
    ) -> None:
        self.site(site)
        self._window(site, window)
        self.store.put_helpdesk_kpis(site, window, day, requests, fast, resolved)
        self.audit(
            "helpdesk_kpis",
            f"{site}/{window}/{day}",
            {"requests": requests, "first_response_within_1min": fast, "resolved": resolved},
            site,
        )

    def export_logged(self, table: str, period: str, site: str | None, fmt: str, rows: int) -> None:
        """Exports carry personal data: each one is on the record."""
        self.audit("export", f"{table}.{fmt}", {"period": period, "rows": rows}, site)

    # ------------------------------------------------------------- assessment (A-PASS, A-REVIEW)
    # Thresholds versions, inspectors' findings, verdict sign-off, probation decisions
    # and clerks' appeals. Every read goes through clerk_home / site (scope), every
    # change is audited in its own transaction.

    def _district_of(self, conn: Any, site: str) -> str | None:
        row = conn.execute(select(units.c.district).where(units.c.site == site)).first()
        return None if row is None else str(row.district)

    def thresholds_for(self, site: str, month: str) -> Resolved:
        """The thresholds ``site``'s month is judged by, and the versions they came from."""
        with self._e.connect() as conn:
            district = self._district_of(conn, site)
            versions = threshold_versions(conn, scopes_of(site, district))
        return resolve(self.settings.thresholds, versions, month, site, district)

    def judged(self, clerk_id: str, month: str) -> dict[str, Any]:
        """A clerk's month: the computed verdict (by its thresholds versions) and how it
        stands after sign-off."""
        self.month(month)
        home = self.clerk_home(clerk_id)
        r = self.thresholds_for(home, month)
        v = verdict(self._e, clerk_id, month, r.thresholds, self.settings.timezone, resolved=r)
        return v | {"standing": standing(self._e, v)}

    def thresholds_view(self, site: str, month: str) -> dict[str, Any]:
        """A centre's thresholds for a month: the values, where each came from, and the
        history of the versions of its city, district and centre."""
        self.site(site)
        self.period(month)
        r = self.thresholds_for(site, month)
        with self._e.connect() as conn:
            district = self._district_of(conn, site)
            history = threshold_history(conn, scopes_of(site, district))
        return {
            "site": site,
            "month": month,
            "thresholds": r.thresholds.model_dump(),
            "defaults": self.settings.thresholds.model_dump(),
            **r.as_dict(),
            "history": history,
        }

    def save_thresholds(
        self, scope: str, from_month: str, values: dict[str, Any], reason: str
    ) -> int:
        """A new version of a scope's thresholds (never an edit of an old one). The
        principal must cover the scope: a district administrator sets its district's
        and its centres', the city's only with the whole city in scope."""
        try:
            checked = check_version(scope, from_month, values)
        except ThresholdsError as exc:
            raise HTTPException(422, str(exc)) from None
        if not self.p.covers(scope):
            raise HTTPException(403, OUTSIDE)
        site = scope.removeprefix("site:") if scope.startswith("site:") else None
        if site is not None:
            with self._e.connect() as conn:
                if conn.execute(select(units.c.site).where(units.c.site == site)).first() is None:
                    raise HTTPException(404, "no such unit")
        at = now_ms()
        with self._e.begin() as conn:
            version = add_threshold_version(
                conn, scope, from_month, checked, reason, self.p.username, at
            )
            detail = {"version": version, "from_month": from_month, "values": checked}
            self._audit(conn, "thresholds", scope, detail | {"reason": reason}, site)
        return version

    def _clerk_session(self, conn: Any, session_id: str, clerk_id: str) -> dict[str, Any]:
        """The clerk's session; 404 when it is not theirs (or does not exist)."""
        row = session_row(conn, session_id)
        if row is None or row["clerk_id"] != clerk_id:
            raise HTTPException(404, "no such session of that clerk")
        return row

    def record_finding(self, f: dict[str, Any]) -> str:
        """An inspector's finding about a clerk of the principal's units (audited)."""
        home = self.clerk_home(f["clerk_id"])
        now = now_ms()
        finding_id = str(uuid.uuid4())
        with self._e.begin() as conn:
            observed = f.get("observed_ms")
            if f.get("session_id") is not None:
                s = self._clerk_session(conn, f["session_id"], f["clerk_id"])
                if f.get("video_ms") is not None and f["video_ms"] > (
                    s["closed_ms"] - s["opened_ms"] + VIDEO_SLACK_MS
                ):
                    raise HTTPException(422, "video_ms: past the end of the session")
                observed = (
                    s["opened_ms"] + (f.get("video_ms") or 0) if observed is None else observed
                )
            elif f.get("video_ms") is not None:
                raise HTTPException(422, "video_ms: a video time needs the session it is in")
            if observed is None:
                observed = now
            if observed > now + CLOCK_SKEW_MS:
                raise HTTPException(422, "observed_ms: a finding cannot be in the future")
            row = {
                "finding_id": finding_id,
                "site": home,
                "clerk_id": f["clerk_id"],
                "kind": f["kind"],
                "criterion": f["criterion"],
                "outcome": f["outcome"],
                "observed_ms": observed,
                "session_id": f.get("session_id"),
                "video_ms": f.get("video_ms"),
                "note": f["note"],
                "attachments": list(f.get("attachments") or []),
                "recorded_by": self.p.username,
                "recorded_ms": now,
            }
            add_finding(conn, row)
            detail = {k: row[k] for k in ("clerk_id", "kind", "criterion", "outcome", "session_id")}
            self._audit(conn, "finding", finding_id, detail, home)
        return finding_id

    def withdraw_finding(self, finding_id: str, reason: str) -> None:
        with self._e.begin() as conn:
            site = self._site_of(conn, findings.c.finding_id, finding_id, "finding")
            if not withdraw_finding(conn, finding_id, self.p.username, now_ms(), reason):
                raise HTTPException(409, "finding already withdrawn")
            self._audit(conn, "withdraw_finding", finding_id, {"reason": reason}, site)

    def findings(self, clerk_id: str, period: str) -> list[dict[str, Any]]:
        self.clerk_home(clerk_id)
        pd = self.period(period)
        with self._e.connect() as conn:
            rows = finding_rows(conn, [clerk_id], pd.start_ms, pd.end_ms)
        return [{k: v for k, v in r.items() if k != "site"} for r in rows]

    def finding(self, finding_id: str) -> dict[str, Any]:
        """One finding; 404 outside the scope (a clerk: not its own)."""
        with self._e.connect() as conn:
            row = conn.execute(select(findings).where(findings.c.finding_id == finding_id)).first()
        if row is None or not self.p.sees(row.site):
            raise HTTPException(404, "no such finding")
        if self.p.clerk_id not in (None, row.clerk_id):
            raise HTTPException(404, "no such finding")
        return {k: v for k, v in row._mapping.items() if k != "site"}

    def _month_over(self, month: str) -> None:
        if self.period(month).end_ms > now_ms():
            raise HTTPException(409, "the month is not over yet")

    def decide_verdict(
        self, clerk_id: str, month: str, action: str, result: str | None, reason: str
    ) -> dict[str, Any]:
        """Confirm the computed verdict, or override it with a result and a reason; the
        decision keeps what the person saw (computed result, criteria, thresholds)."""
        v = self.judged(clerk_id, month)
        self._month_over(month)
        if action == "confirm":
            if result is not None and result != v["result"]:
                raise HTTPException(422, "result: a confirmation takes the computed result")
            result = v["result"]
        elif result is None:
            raise HTTPException(422, "result: an override sets the result")
        home = self.clerk_home(clerk_id)
        computed = {
            "result": v["result"],
            "criteria": [
                {k: c.get(k) for k in ("criterion", "value", "status")} for c in v["criteria"]
            ],
            "thresholds_version": v["thresholds_version"],
        }
        with self._e.begin() as conn:
            decision = add_verdict_decision(
                conn,
                {
                    "clerk_id": clerk_id,
                    "site": home,
                    "month": month,
                    "action": action,
                    "result": result,
                    "computed_result": v["result"],
                    "computed": computed,
                    "reason": reason,
                    "decided_by": self.p.username,
                    "decided_ms": now_ms(),
                },
            )
            detail = {"month": month, "action": action, "result": result, "computed": v["result"]}
            self._audit(conn, "verdict_" + action, clerk_id, detail | {"reason": reason}, home)
        return self.judged(clerk_id, month) | {"decision": decision}

    def probation_view(
        self, clerk_id: str, month: str, current: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A clerk's probation for a month; ``current``: its verdict, when judged already."""
        self.period(month)
        home = self.clerk_home(clerk_id)
        s = self.settings
        prev = self.thresholds_for(home, previous_month(month)).thresholds
        cur = self.thresholds_for(home, month).thresholds
        return probation(
            self._e, clerk_id, month, cur, s.timezone, previous_thresholds=prev, current=current
        )

    def decide_probation(
        self, clerk_id: str, month: str, action: str, outcome: str | None, reason: str
    ) -> dict[str, Any]:
        """Start a clerk's probation for ``month`` (the month before it failed, as it
        stands), or end it with an outcome once the month is over."""
        self.period(month)
        home = self.clerk_home(clerk_id)
        before = self.judged(clerk_id, previous_month(month))["standing"]["result"]
        with self._e.connect() as conn:
            decided = decided_probation(probation_decision_rows(conn, [clerk_id]), month)
        if action == "start":
            if outcome is not None:
                raise HTTPException(422, "outcome: a start has none")
            if before != "fail":
                raise HTTPException(409, f"the month before {month} did not fail ({before})")
            if decided is not None and decided["month"] == month and decided["outcome"] is None:
                raise HTTPException(409, "that probation is already started")
        else:
            if outcome is None:
                raise HTTPException(422, "outcome: passed or returned_to_agency")
            if decided is None or decided["month"] != month or decided["outcome"] is not None:
                raise HTTPException(409, f"no probation of {month} to end")
            self._month_over(month)
        with self._e.begin() as conn:
            add_probation_decision(
                conn,
                {
                    "clerk_id": clerk_id,
                    "site": home,
                    "month": month,
                    "action": action,
                    "outcome": outcome,
                    "reason": reason,
                    "decided_by": self.p.username,
                    "decided_ms": now_ms(),
                },
            )
            detail = {"month": month, "outcome": outcome, "reason": reason}
            self._audit(conn, "probation_" + action, clerk_id, detail, home)
        return self.probation_view(clerk_id, month)

    def file_appeal(
        self,
        note: str,
        session_id: str | None = None,
        criterion: str | None = None,
        month: str | None = None,
    ) -> str:
        """A clerk contests one of its sessions' verdicts, or a monthly verdict."""
        clerk_id = self.p.clerk_id
        if clerk_id is None:
            raise HTTPException(403, "only a clerk's own account appeals")
        home = self.clerk_home(clerk_id)
        with self._e.connect() as conn:
            if session_id is not None:
                s = self._clerk_session(conn, session_id, clerk_id)
                if criterion not in CORRECTABLE:
                    raise HTTPException(
                        422, f"criterion: one of the session's verdicts ({', '.join(CORRECTABLE)})"
                    )
                # only a failure is contested: a verdict complied, not judged or not
                # observed (never a failure) holds nothing against the clerk
                if s[criterion] is not False or s[UNOBSERVED[criterion]]:
                    raise HTTPException(409, f"{criterion}: that verdict is not a failure")
                month = local_day(s["opened_ms"], self.settings.timezone)[:7]
            elif month is None:
                raise HTTPException(422, "month: an appeal names a session or a month")
            elif criterion is not None:
                raise HTTPException(422, "criterion: only with a session")
            self.period(month)
            dup = [
                a
                for a in appeal_rows(
                    conn, sites=None, clerk_id=clerk_id, status="open", month=month
                )
                if (a["session_id"], a["criterion"]) == (session_id, criterion)
            ]
        if dup:
            raise HTTPException(409, "an appeal on that is already open")
        before = self.judged(clerk_id, month)["standing"]
        appeal_id = str(uuid.uuid4())
        with self._e.begin() as conn:
            add_appeal(
                conn,
                {
                    "appeal_id": appeal_id,
                    "site": home,
                    "clerk_id": clerk_id,
                    "month": month,
                    "session_id": session_id,
                    "criterion": criterion,
                    "note": note,
                    "filed_by": self.p.username,
                    "filed_ms": now_ms(),
                    "before": {"result": before["result"], "sign_off": before["sign_off"]},
                },
            )
            detail = {"month": month, "session_id": session_id, "criterion": criterion}
            self._audit(conn, "appeal", appeal_id, detail, home)
        return appeal_id

    def appeals(
        self, status: str | None = None, site: str | None = None, month: str | None = None
    ) -> list[dict[str, Any]]:
        """Appeals of the principal's units (a clerk: its own), newest first."""
        with self._e.connect() as conn:
            return appeal_rows(
                conn, sites=self.sites(site), clerk_id=self.p.clerk_id, status=status, month=month
            )

    def appeal(self, appeal_id: str) -> dict[str, Any]:
        """One appeal with what the person resolving it needs: the session, its events
        and the corrections made to it."""
        with self._e.connect() as conn:
            row = appeal_row(conn, appeal_id)
            if row is None or not self.p.sees(row["site"]):
                raise HTTPException(404, "no such appeal")
            if self.p.clerk_id is not None and row["clerk_id"] != self.p.clerk_id:
                raise HTTPException(404, "no such appeal")
            sid = row["session_id"]
            session = session_row(conn, sid) if sid else None
            evs = (
                [
                    {"event_id": e.event_id, "kind": e.kind, "ts_ms": e.ts_ms, "payload": e.payload}
                    for e in conn.execute(
                        select(events.c.event_id, events.c.kind, events.c.ts_ms, events.c.payload)
                        .where(events.c.session_id == sid)
                        .order_by(events.c.ts_ms, events.c.seq)
                    )
                ]
                if sid
                else []
            )
            corrections = correction_rows(conn, [sid]) if sid else []
        return row | {"session": session, "events": evs, "corrections": corrections}

    def resolve_appeal(
        self, appeal_id: str, upheld: bool, resolution: str | None, result: str | None, note: str
    ) -> dict[str, Any]:
        """Uphold (the session's verdict corrected, or the session not counted; on a
        monthly verdict, its result set) or reject an open appeal, with a note. The month
        is recomputed; the appeal keeps the result before and after."""
        a = self.appeal(appeal_id)
        if a["status"] != "open":
            raise HTTPException(409, "appeal already resolved")
        at = now_ms()
        if upheld and a["session_id"] is not None:
            if resolution not in ("corrected", NOT_COUNTED):
                raise HTTPException(422, "resolution: corrected or not_counted")
            if result is not None:
                raise HTTPException(422, "result: only an appeal on a monthly verdict sets one")
        elif upheld:
            if result is None:
                raise HTTPException(422, "result: an upheld appeal on a verdict sets the result")
            resolution = "overridden"
        elif resolution is not None or result is not None:
            raise HTTPException(422, "a rejected appeal changes nothing")
        with self._e.begin() as conn:
            if upheld and a["session_id"] is not None:
                column = NOT_COUNTED if resolution == NOT_COUNTED else str(a["criterion"])
                correct_session(conn, a["session_id"], appeal_id, column, self.p.username, at)
            if not resolve_appeal(
                conn,
                appeal_id,
                {
                    "status": "upheld" if upheld else "rejected",
                    "resolution": resolution,
                    "resolution_note": note,
                    "resolved_by": self.p.username,
                    "resolved_ms": at,
                },
            ):
                raise HTTPException(409, "appeal already resolved")
            detail = {"upheld": upheld, "resolution": resolution, "note": note}
            self._audit(conn, "resolve_appeal", appeal_id, detail, a["site"])
        if upheld and a["session_id"] is None:
            self._override_for_appeal(a, str(result), note)
        after = self.judged(a["clerk_id"], a["month"])["standing"]
        with self._e.begin() as conn:
            conn.execute(
                update(appeals)
                .where(appeals.c.appeal_id == appeal_id)
                .values(after={"result": after["result"], "sign_off": after["sign_off"]})
            )
        return self.appeal(appeal_id)

    def _override_for_appeal(self, a: dict[str, Any], result: str, note: str) -> None:
        v = self.judged(a["clerk_id"], a["month"])
        computed = {"result": v["result"], "thresholds_version": v["thresholds_version"]}
        with self._e.begin() as conn:
            add_verdict_decision(
                conn,
                {
                    "clerk_id": a["clerk_id"],
                    "site": a["site"],
                    "month": a["month"],
                    "action": "override",
                    "result": result,
                    "computed_result": v["result"],
                    "computed": computed | {"appeal_id": a["appeal_id"]},
                    "reason": f"appeal upheld: {note}",
                    "decided_by": self.p.username,
                    "decided_ms": now_ms(),
                },
            )
            detail = {"month": a["month"], "result": result, "appeal_id": a["appeal_id"]}
            self._audit(conn, "verdict_override", a["clerk_id"], detail, a["site"])

    # ------------------------------------------------------------- reads: monthly reports
    # The centre's and the clerk's monthly report (HTML and PDF, server/api/export.py).
    # This region is the reports' own: the scope is checked here, the verdicts computed
    # through this class's reads, and server/reports.py adds what people recorded.

    def centre_report(self, site: str, month: str, fmt: str) -> reports.CentreReport:
        """A centre's month; not for a clerk-bound principal. Audited as a report view
        (it names every clerk of the centre)."""
        self.site(site)
        self.not_clerk()
        pd = self.period(month)
        unit = next((u for u in self.units() if u["site"] == site), None)
        if unit is None:
            raise HTTPException(404, "no such unit")
        scope = Scope(site=site)
        staff = self.clerks(site)
        report = reports.centre_month(
            self._e,
            unit,
            month,
            (pd.start_ms, pd.end_ms),
            now_ms(),
            clerks=staff,
            verdicts={c["clerk_id"]: self.verdict(c["clerk_id"], month) for c in staff},
            probations={c["clerk_id"]: self.probation(c["clerk_id"], month) for c in staff},
            total=self.measures(scope, pd)[None],
            by_window=self.measures(scope, pd, group_by="window"),
            ranking=self.ranking(scope, pd),
        )
        self.audit("report", f"{site}/{month}", {"clerks": len(staff), "format": fmt}, site)
        return report

    def clerk_report(self, clerk_id: str, month: str, fmt: str) -> reports.ClerkReport:
        """One clerk's month: 404 for a clerk outside the scope, and for a clerk-bound
        principal any clerk but its own. Audited as a report view."""
        home = self.clerk_home(clerk_id)
        pd = self.period(month)
        clerk = next(c for c in self.store.clerks(home, None) if c["clerk_id"] == clerk_id)
        unit = next(u for u in self.units() if u["site"] == home)
        report = reports.clerk_month(
            self._e,
            unit,
            clerk,
            month,
            (pd.start_ms, pd.end_ms),
            now_ms(),
            measures=self.measures(self.scope(clerk_id=clerk_id), pd)[None],
            verdict=self.verdict(clerk_id, month),
            probation=self.probation(clerk_id, month),
            sites=self.p.sites,
        )
        self.audit("report", f"clerk/{clerk_id}/{month}", {"format": fmt}, home)
        return report

    # ------------------------------------------------------------- outbound (issue 18)
    # The outbound targets' status and their dead deliveries (server/outbound). The
    # targets come from the server's file only; nothing here takes a URL or a host.

    def outbound(self) -> dict[str, Any]:
        """Per configured target serving the principal's units: last success, last
        error, backlog and dead count (within those units); and the dead deliveries."""
        self.not_clerk()
        cfg = outbound_targets.load_cached(self.settings.outbound_file)
        with self._e.connect() as conn:
            zones = dict(conn.execute(select(units.c.site, units.c.district)).all())
            mine = [s for s in zones if self.p.sees(s)]
            counted = outbound_queue.counts(conn, self.p.sites)
            status = {r.target: r for r in conn.execute(select(outbound_status))}
            dead = outbound_queue.dead_rows(conn, self.p.sites)
            switches = {(r.target, r.site): r for r in conn.execute(select(outbound_switches))}
        out = []
        for t in cfg.targets.values():
            served = sorted(s for s in mine if t.serves(s, zones[s]))
            if not served:
                continue
            n, st = counted.get(t.name, Counter()), status.get(t.name)
            unit_switches = []
            for s in served:
                sw = switches.get((t.name, s))
                unit_switches.append(
                    {
                        "site": s,
                        "enabled": sw.enabled if sw else True,
                        "by": sw.by if sw else None,
                        "at_ms": sw.at_ms if sw else None,
                    }
                )
            out.append(
                {
                    "name": t.name,
                    "type": t.type,
                    "host": t.host,
                    "kinds": sorted(t.kinds),
                    "enabled": t.enabled,
                    "backlog": n["pending"],
                    "delivered": n["delivered"],
                    "dead": n["dead"],
                    "last_success_ms": st.last_success_ms if st else None,
                    "last_error_ms": st.last_error_ms if st else None,
                    "last_error": st.last_error if st else None,
                    "units": unit_switches,
                }
            )
        return {"targets": out, "dead": dead}

    def switch_target(self, name: str, site: str, enabled: bool, reason: str) -> None:
        """Switch a configured target off or on for one of the principal's units (its
        deliveries there wait while off); audited. 403 outside the units; 404 for a
        unit or target that does not exist or a target not serving that unit. Only the
        outbound file names targets: nothing here takes a URL or a host."""
        self.site(site)
        cfg = outbound_targets.load_cached(self.settings.outbound_file)
        with self._e.begin() as conn:
            unit = conn.execute(select(units.c.district).where(units.c.site == site)).first()
            if unit is None:
                raise HTTPException(404, "no such unit")
            target = cfg.targets.get(name)
            if target is None or not target.serves(site, unit.district):
                raise HTTPException(404, "no such target for this unit")
            was = outbound_queue.switch(conn, name, site, enabled, self.p.username, now_ms())
            detail = {
                "target": name,
                "enabled": enabled,
                "was": was,
                "reason": reason,
            }
            self._audit(conn, "outbound_switch", name, detail, site)

    def resend_delivery(self, delivery_id: int) -> None:
        """Make a dead delivery of the principal's units pending again; audited. 404 for
        one outside them, as if it did not exist."""
        with self._e.begin() as conn:
            site = conn.execute(
                select(outbound_deliveries.c.site).where(outbound_deliveries.c.id == delivery_id)
            ).scalar()
            if site is None or not self.p.sees(site):
                raise HTTPException(404, "no such delivery")
            row = outbound_queue.resend(conn, delivery_id, self.p.username, now_ms())
            if row is None:
                raise HTTPException(409, "only a dead delivery can be resent")
            detail = {"target": row["target"], "key": row["key"], "attempts": row["attempts"]}
            self._audit(conn, "outbound_resend", str(delivery_id), detail, site)

    # ------------------------------------------------------------- window settings

    def window_settings_view(self, site: str | None) -> dict[str, Any]:
        """The settings pushes that reach the principal's units (one centre's, with
        ``site``), and per window what was sent and what the terminal applied."""
        self.not_clerk()
        sites = self.sites(site)
        with self._e.connect() as conn:
            unit_rows = conn.execute(select(units.c.site, units.c.district)).all()
            districts = {r.site: r.district for r in unit_rows}
            mine = set(districts) if sites is None else set(sites) & set(districts)
            visible = [
                p
                for p in settings_push.pushes(conn)
                if any(reaches_site(p["scope"], s, districts[s]) for s in mine)
            ]
            windows = settings_push.window_status(conn, None if sites is None else mine)
        return {"site": site, "pushes": visible[::-1], "windows": windows}

    def settings_targets(self, scope: str) -> list[tuple[str, str]]:
        """The registered windows a push for ``scope`` reaches: 422 for a scope that is not
        one, 403 outside the principal's units, 404 for a centre or window not registered."""
        if not valid_settings_scope(scope):
            raise HTTPException(
                422, "scope: all, district:<name>, site:<slug> or window:<site>/<window>"
            )
        one = settings_site_of(scope)
        if not self.p.covers(f"site:{one}" if one is not None else scope):
            raise HTTPException(403, OUTSIDE)
        with self._e.connect() as conn:
            q = select(devices.c.site, devices.c.window, units.c.district).join(
                units, units.c.site == devices.c.site
            )
            rows = conn.execute(q.order_by(devices.c.site, devices.c.window)).all()
        found = [
            (r.site, r.window) for r in rows if reaches_window(scope, r.site, r.window, r.district)
        ]
        if not found and one is not None:
            what = "window" if scope.startswith("window:") else "unit"
            raise HTTPException(404, f"no such {what}")
        return found

    def check_window_settings(self, scope: str, fields: dict[str, Any]) -> list[tuple[str, str]]:
        """Fields checked one by one (422 names each) and the scope's windows (see
        ``settings_targets``)."""
        problems = check_fields(fields)
        if problems:
            raise HTTPException(422, "; ".join(problems))
        return self.settings_targets(scope)

    def push_window_settings(
        self, scope: str, fields: dict[str, Any], note: str
    ) -> tuple[int, list[tuple[str, str]]]:
        """A new push on the record (audited), checked field by field first (422 names
        each field); the windows it reaches, for the caller to publish to."""
        targets = self.check_window_settings(scope, fields)
        with self._e.begin() as conn:
            push_id = settings_push.record_push(
                conn, scope, fields, note, self.p.username, now_ms()
            )
            detail = {"push": push_id, "fields": fields, "note": note, "windows": len(targets)}
            self._audit(conn, "settings_push", scope, detail, settings_site_of(scope))
        return push_id, targets

    def withdrawable_push(self, push_id: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """A live push of the principal's units and the windows it reaches; 404 for one
        outside them (as if it did not exist), 409 for one already withdrawn."""
        with self._e.connect() as conn:
            row = settings_push.push_row(conn, push_id)
        if row is None:
            raise HTTPException(404, "no such push")
        try:
            targets = self.settings_targets(row["scope"])
        except HTTPException as exc:
            raise HTTPException(404, "no such push") from exc
        if row["withdrawn_ms"] is not None:
            raise HTTPException(409, "that push is already withdrawn")
        return row, targets

    def withdraw_window_settings(self, push_id: int, reason: str) -> list[tuple[str, str]]:
        """Withdraw a push (audited; 404 outside the principal's units, 409 if already
        withdrawn); the windows whose settings change, for the caller to publish to."""
        row, targets = self.withdrawable_push(push_id)
        with self._e.begin() as conn:
            if not settings_push.withdraw_push(conn, push_id, self.p.username, reason, now_ms()):
                raise HTTPException(409, "that push is already withdrawn")
            detail = {"push": push_id, "reason": reason}
            site = settings_site_of(row["scope"])
            self._audit(conn, "settings_withdraw", row["scope"], detail, site)
        return targets


def reaches_site(scope: str, site: str, district: str) -> bool:
    """Whether a push for ``scope`` touches any window of ``site``."""
    if scope.startswith("window:"):
        return scope.removeprefix("window:").split("/", 1)[0] == site
    return reaches_window(scope, site, "", district)


def get_access(
    request: Request, p: PrincipalDep, accounts: AccountsDep, settings: SettingsDep
) -> Access:
    """The request's ``Access``. A service token reads only with the ``read`` grant."""
    if p.is_token and request.method in ("GET", "HEAD") and not p.can("read"):
        raise HTTPException(403, "this token may not read")
    store: Store = request.app.state.store
    return Access(p, store, accounts, settings)


AccessDep = Annotated[Access, Depends(get_access)]


def reading(action: str) -> Any:
    """Dependency of a read that needs a permission beyond the scope (e.g. the audit log)."""

    def dep(a: AccessDep) -> Access:
        if not a.p.can(action):
            raise HTTPException(403, f"you may not read this ({action})")
        return a

    return Depends(dep)


def changing(action: str) -> Any:
    """Dependency of a state-changing route: the permission (a user's role, or a token's
    grant), the CSRF token for cookie sessions, then the request's ``Access``."""
    permitted = acting(action)

    def dep(
        request: Request,
        accounts: AccountsDep,
        settings: SettingsDep,
        p: Principal = permitted,  # type: ignore[assignment]
    ) -> Access:
        store: Store = request.app.state.store
        return Access(p, store, accounts, settings)

    return Depends(dep)
