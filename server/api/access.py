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

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request
from sqlalchemy import or_, select, update

from agent.protocol import now_ms
from server import views
from server.accounts import Accounts, Principal, scope_sites, write_audit
from server.api.deps import AccountsDep, PrincipalDep, ServerSettings, SettingsDep, acting, bounds
from server.metrics.assessment import probation, verdict
from server.metrics.measures import GroupBy, Measures, Scope, compute, smile_star_ranking
from server.policy.shifts import ShiftConflict, Source
from server.store.calls import call_cmd_id
from server.store.cases import acknowledge, close_open_case
from server.store.credentials import CredentialError, clear_credentials
from server.store.db import Store
from server.store.people import SignedIn
from server.store.schema import (
    alerts,
    audit_log,
    cases,
    clerks,
    devices,
    units,
)

OUTSIDE = "outside your units"
#: How far ahead of the server's clock a sign-in's time may be (terminal clocks drift).
CLOCK_SKEW_MS = 120_000
CLERK_ONLY = "a clerk account reads only its own records"


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
            too_broad_counts=self.settings.thresholds.too_broad_counts,
        )
        if self.p.clerk_id is not None:
            return [r for r in rows if r["clerk_id"] == self.p.clerk_id]
        return rows

    def verdict(self, clerk_id: str, month: str) -> dict[str, Any]:
        self.period(month)
        self.clerk_home(clerk_id)
        s = self.settings
        return verdict(self._e, clerk_id, month, s.thresholds, s.timezone)

    def probation(self, clerk_id: str, month: str) -> dict[str, Any]:
        self.period(month)
        self.clerk_home(clerk_id)
        s = self.settings
        return probation(self._e, clerk_id, month, s.thresholds, s.timezone)

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
        self.period(month)
        scope = self.scope(site=site)
        s = self.settings
        out = []
        for clerk in self.clerks(scope.site, scope.district if scope.site is None else None):
            v = verdict(self._e, clerk["clerk_id"], month, s.thresholds, s.timezone)
            pr = probation(self._e, clerk["clerk_id"], month, s.thresholds, s.timezone)
            out.append(
                clerk
                | {
                    "result": v["result"],
                    "failures": v["failures"],
                    "criteria": v["criteria"],
                    "probation": pr["status"],
                    "measures": v["measures"],
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

    def close_case(self, case_id: str, note: str) -> int:
        """Close an open case of the principal's units now (the server's clock); the
        time it was closed."""
        at_ms = now_ms()
        with self._e.begin() as conn:
            site = self._site_of(conn, cases.c.case_id, case_id, "case")
            if not close_open_case(conn, case_id, note, at_ms):
                raise HTTPException(409, "case already closed")
            self._audit(conn, "close_case", case_id, {"note": note, "at_ms": at_ms}, site)
        return at_ms

    def add_clerk(self, clerk_id: str, name: str, site: str) -> bool:
        """Register a clerk at a centre, or rename one of that centre's clerks; True when new.

        A clerk id belongs to one centre: an id already used elsewhere is refused (409),
        never silently moved; moving is ``transfer_clerk``."""
        self.site(site)
        with self._e.begin() as conn:
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
            detail = {"from": home, "to": to_site}
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
