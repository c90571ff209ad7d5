"""Who serves where: sign-in, sign-out, the planned roster and a centre's day of shifts.

Every route goes through ``Access`` (scope, clerk's own centre, audit) and every sign-in
through the one attribution rule in ``server/policy/shifts.py``, whatever its source. A
manager's sign-in may be recorded late (``start_ms`` earlier than now); it then takes only
the window's unattributed sessions and says how many.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Self

from fastapi import APIRouter, Request
from pydantic import Field, model_validator

from agent.protocol import Slug, TimestampMs
from server.api.access import Access, AccessDep, changing
from server.api.models import ApiModel
from server.api.schemas import Out, SiteSlug, TimeMs, WindowSlug
from server.api.window_settings import maybe_publisher

router = APIRouter(prefix="/api")

ClerkId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="Staff id.")]
ShiftSource = Annotated[
    str, Field(description="Where it came from: queue, badge, pin, manager or demo.")
]


class SignIn(ApiModel):
    clerk_id: ClerkId
    site: Slug
    window: Slug
    start_ms: TimestampMs | None = Field(
        None, description="Effective from, UTC ms (default now; earlier: recorded late)."
    )
    end_ms: TimestampMs | None = Field(
        None, description="For a shift that is over, when it ended, UTC ms."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_ms is not None and self.start_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        return self


class SignOut(ApiModel):
    site: Slug
    window: Slug | None = Field(None, description="The window to sign out (or clerk_id).")
    clerk_id: ClerkId | None = Field(None)
    at_ms: TimestampMs | None = Field(None, description="When, UTC ms (default now).")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.window is None) == (self.clerk_id is None):
            raise ValueError("give either window or clerk_id")
        return self


class PlanIn(ApiModel):
    clerk_id: ClerkId
    site: Slug
    window: Slug
    from_ms: TimestampMs = Field(description="Expected from, UTC ms.")
    to_ms: TimestampMs = Field(description="Expected until, UTC ms.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.to_ms <= self.from_ms:
            raise ValueError("to_ms must be after from_ms")
        return self


class SignedInOut(Out):
    """The shift a sign-in made (or found, when repeated)."""

    clerk_id: str = Field(description="The clerk signed in.")
    site: SiteSlug
    window: WindowSlug
    start_ms: TimeMs = Field(
        description="Where the shift starts: the asked time, or later when another "
        "clerk's finished shift covered it."
    )
    end_ms: TimeMs | None = Field(
        description="Where it ends: the asked end or the next shift at the window; null: open."
    )
    closed_shifts: int = Field(
        description="Shifts this closed: the window's previous clerk, the clerk elsewhere."
    )
    sessions_taken: int = Field(
        description="Unattributed sessions inside the shift that it now attributes."
    )
    repeated: bool = Field(description="The clerk was already signed in there: no change.")


class SignedOutOut(Out):
    """The shift a sign-out ended."""

    clerk_id: str = Field(description="Whose shift ended.")
    window: WindowSlug
    at_ms: TimeMs = Field(description="When it ended, UTC ms.")


class ShiftOut(Out):
    """One clerk at one window over a span; sessions opened in it are that clerk's."""

    clerk_id: str = Field(description="The clerk's staff id.")
    window: WindowSlug
    start_ms: TimeMs = Field(description="Signed in, UTC ms.")
    end_ms: TimeMs | None = Field(description="Signed out, UTC ms; null: still signed in.")
    source: ShiftSource
    end_source: str | None = Field(
        description="What ended it (a sign-out's source, or the next sign-in's); null: open."
    )
    recorded_by: str | None = Field(description="Who recorded it (user, token or terminal).")
    recorded_ms: TimeMs | None = Field(description="When it was recorded, UTC ms.")


class PlannedOut(Out):
    """Who was expected where: a plan, never a sign-in."""

    clerk_id: str = Field(description="The clerk expected.")
    window: WindowSlug
    from_ms: TimeMs = Field(description="Expected from, UTC ms.")
    to_ms: TimeMs = Field(description="Expected until, UTC ms.")
    signed_in: bool = Field(description="The clerk had a shift at that window in the span.")
    missing: bool = Field(description="Rostered, the time has come, and not signed in.")


class UnattributedOut(Out):
    """Sessions no shift covers: shown, never in a clerk's verdict, never guessed."""

    window: WindowSlug
    sessions: int = Field(description="Sessions opened that day with no clerk signed in.")


class RosterDay(Out):
    """A centre's day of shifts beside its planned roster."""

    site: SiteSlug
    day: date = Field(description="The local day.")
    shifts: list[ShiftOut] = Field(description="Every shift overlapping the day.")
    planned: list[PlannedOut] = Field(description="The planned roster for the day.")
    unattributed: list[UnattributedOut] = Field(description="Per window with any.")


class CredentialsIn(ApiModel):
    """A clerk's badge numbers and PIN, plain in this request only: stored as digests."""

    badges: list[Annotated[str, Field(pattern=r"^[0-9A-Za-z]{1,32}$")]] = Field(
        [], max_length=8, description="Badge numbers (replacing any enrolled before)."
    )
    pin: Annotated[str, Field(pattern=r"^[1-5]{4,6}$")] | None = Field(
        None, description="4-6 of the panel's keys 1-5; null: no PIN."
    )


class CredentialsOut(Out):
    """What is enrolled (never the values)."""

    clerk_id: str = Field(description="The clerk.")
    badges: int = Field(description="Badges enrolled.")
    pin: bool = Field(description="A PIN is enrolled.")
    terminals: int | None = Field(
        None,
        description="Windows of the centre sent the new clerk directory over the air; "
        "null: this server does not push settings (write the directory file for them).",
    )


@router.post("/clerks/{clerk_id}/credentials")
def set_credentials(
    clerk_id: str,
    body: CredentialsIn,
    request: Request,
    a: Annotated[Access, changing("roster")],
) -> CredentialsOut:
    """Enrol a clerk's badges and PIN for sign-in at the terminals (digests only; a
    transfer to another centre clears them). 409 when another clerk has the PIN or badge.
    Where the server pushes settings, the centre's terminals get the new clerk directory
    at once (``terminals``: how many windows it was sent to)."""
    n, has_pin = a.set_credentials(clerk_id, body.badges, body.pin)
    pub = maybe_publisher(request, a)
    sent = None
    if pub is not None:
        sent = len(pub.sync_directory(a.clerk_home(clerk_id), a.p.username))
    return CredentialsOut(clerk_id=clerk_id, badges=n, pin=has_pin, terminals=sent)


@router.post("/roster", status_code=201)
def sign_in(body: SignIn, a: Annotated[Access, changing("roster")]) -> SignedInOut:
    """Sign a clerk in at a window (a manager on the roster page). Closes the previous
    clerk's shift there and the clerk's own shift at another window; 409 when it would
    take a session someone else served."""
    done = a.sign_in(body.clerk_id, body.site, body.window, body.start_ms, body.end_ms)
    return SignedInOut(
        clerk_id=body.clerk_id,
        site=body.site,
        window=body.window,
        start_ms=done.start_ms,
        end_ms=done.end_ms,
        closed_shifts=len(done.closed),
        sessions_taken=done.sessions_taken,
        repeated=done.noop,
    )


@router.post("/roster/sign-out")
def sign_out(body: SignOut, a: Annotated[Access, changing("roster")]) -> SignedOutOut:
    """End the shift at a window, or a clerk's shift wherever it is."""
    clerk, window, at = a.sign_out(body.site, body.window, body.clerk_id, body.at_ms)
    return SignedOutOut(clerk_id=clerk, window=window, at_ms=at)


@router.post("/roster/plan", status_code=201)
def plan(body: PlanIn, a: Annotated[Access, changing("roster")]) -> PlannedOut:
    """Add who is expected at a window when (shown beside the sign-ins)."""
    a.plan_roster(body.site, body.window, body.clerk_id, body.from_ms, body.to_ms)
    return PlannedOut(
        clerk_id=body.clerk_id,
        window=body.window,
        from_ms=body.from_ms,
        to_ms=body.to_ms,
        signed_in=False,
        missing=False,
    )


@router.get("/roster")
def roster_day(site: str, day: date, a: AccessDep) -> RosterDay:
    """A centre's day: shifts with their sources, the plan, and unattributed sessions."""
    got: dict[str, Any] = a.roster(site, day.isoformat())
    return RosterDay(
        site=site,
        day=day,
        shifts=[ShiftOut.model_validate(_pick(s, ShiftOut)) for s in got["shifts"]],
        planned=[PlannedOut.model_validate(_pick(p, PlannedOut)) for p in got["planned"]],
        unattributed=[UnattributedOut.model_validate(u) for u in got["unattributed"]],
    )


def _pick(row: dict[str, Any], model: type[Out]) -> dict[str, Any]:
    return {k: row[k] for k in model.model_fields}
