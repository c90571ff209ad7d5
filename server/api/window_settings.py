"""Window settings over the air: push rule thresholds and camera rates to terminals.

Reads and changes go through ``Access`` (its window-settings region): anyone who sees a
centre sees its windows' settings; pushing and withdrawing need ``window_settings`` (a
district administrator, for its district and centres; the city's only with the city
in scope), are checked field by field and audited. Each window reached gets one signed
bundle on its retained ``settings`` topic (``server/settings_push.py``); whether the
terminal applied it comes back in its health report.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agent.protocol import Channel, StorableText
from server.api.access import Access, AccessDep, changing
from server.api.schemas import Out
from server.bundles import load_private_key
from server.settings_push import Publication, SettingsPublisher

router = APIRouter(prefix="/api/window-settings", tags=["window settings"])
Pushes = Annotated[Access, changing("window_settings")]


class SettingsPushOut(Out):
    """A push of settings on the record."""

    id: int = Field(description="The push's number.")
    scope: str = Field(description="all, district:<name>, site:<slug> or window:<site>/<w>.")
    fields: dict[str, Any] = Field(description="Dotted field -> value it sets.")
    note: str = Field(description="Why (for the record).")
    by: str = Field(description="Who pushed it.")
    at_ms: int = Field(description="When (UTC ms).")
    withdrawn_ms: int | None = Field(description="When it was withdrawn; null: it applies.")
    withdrawn_by: str | None = Field(description="Who withdrew it.")
    withdraw_reason: str | None = Field(description="Why it was withdrawn.")


class WindowSettingsStatusOut(Out):
    """One window: the bundle last sent and what its terminal says it applied."""

    site: str = Field(description="The centre.")
    window: str = Field(description="The window.")
    sent_serial: int | None = Field(description="Serial of the bundle last sent; null: none.")
    sent_ms: int | None = Field(description="When it was sent (UTC ms).")
    sent_error: str | None = Field(description="Why the broker did not take it, if so.")
    push_ids: list[int] = Field(description="The pushes it was composed of.")
    applied_serial: int | None = Field(
        description="The serial the terminal reports applied (null: its window file only)."
    )
    terminal_error: str | None = Field(description="Why the terminal refused or rolled back.")
    status: Literal["applied", "pending", "refused", "not sent", "none"] = Field(
        description="applied; pending (sent, not reported yet); refused (the terminal "
        "refused it or rolled it back); not sent (publish again); none (never pushed)."
    )


class WindowSettingsOut(Out):
    site: str | None = Field(description="The centre asked for; null: all your units.")
    pushes: list[SettingsPushOut] = Field(description="Pushes reaching your units, newest first.")
    windows: list[WindowSettingsStatusOut] = Field(description="Each window's settings status.")


class PushIn(BaseModel):
    """Fields to set on every window of a scope, and why."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(max_length=128, description="all, district:<name>, site:<s>, window:<s>/<w>")
    fields: dict[Annotated[str, Field(max_length=64)], JsonValue] = Field(
        min_length=1,
        max_length=64,
        description="Dotted field -> value, e.g. {'rules.greet_within_s': 6}; allowed: label, "
        "rules.*, camera rates and stream size (agent/overrides.py).",
    )
    note: StorableText = Field(min_length=1, max_length=280, description="Why, for the record.")


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StorableText = Field(min_length=1, max_length=500)


class PublicationOut(Out):
    """One signed settings bundle sent to one window."""

    site: str = Field(description="The centre.")
    window: str = Field(description="The window.")
    serial: int = Field(description="The bundle's serial (the terminal installs a higher one).")
    push_ids: list[int] = Field(description="The pushes it was composed of.")
    published: bool = Field(description="The broker took it (retained on the settings topic).")
    error: str | None = Field(description="Why not, if not: publish again later.")
    directory_clerks: int | None = Field(
        description="Clerks in the clerk directory it carried; null: it carried none."
    )


class PushedOut(Out):
    push_id: int | None = Field(description="The push (null for a republish).")
    publications: list[PublicationOut] = Field(description="One bundle per window reached.")


#: The answer when this server cannot push: it is not set up for it (a setting, not an
#: outage: the push is refused before anything is recorded).
NOT_SET_UP: dict[int | str, dict[str, Any]] = {
    409: {"description": "This server has no signing key or no broker link."}
}


def publisher(request: Request, a: Access) -> SettingsPublisher:
    """The signing key and the broker link, or 409 saying which is missing."""
    key_path = a.settings.bundle_signing_key
    if key_path is None:
        raise HTTPException(
            409, "this server has no settings signing key (WW_BUNDLE_SIGNING_KEY_FILE)"
        )
    ingest = request.app.state.ingest
    if ingest is None:
        raise HTTPException(409, "this server runs without a broker link (MQTT)")
    key = load_private_key(key_path)

    def send(site: str, window: str, data: bytes) -> str | None:
        error: str | None = ingest.publish_retained(site, window, Channel.SETTINGS, data)
        return error

    return SettingsPublisher(a.store.engine, key, send, a.store.directory)


def maybe_publisher(request: Request, a: Access) -> SettingsPublisher | None:
    """The publisher where this server pushes settings; None where it does not (then
    terminals take their clerk directory from a file, ``warmwindow clerks directory``)."""
    if a.settings.bundle_signing_key is None or request.app.state.ingest is None:
        return None
    return publisher(request, a)


def _out(push_id: int | None, pubs: list[Publication]) -> PushedOut:
    return PushedOut(
        push_id=push_id,
        publications=[PublicationOut.model_validate(p.__dict__) for p in pubs],
    )


@router.get("")
def window_settings(a: AccessDep, site: str | None = None) -> WindowSettingsOut:
    """The pushes reaching your units and each window's settings status."""
    return WindowSettingsOut.model_validate(a.window_settings_view(site))


@router.post(
    "",
    status_code=201,
    responses={
        422: {"description": "A field that may not be pushed, or a value out of range."},
        **NOT_SET_UP,
    },
)
def push(body: PushIn, request: Request, a: Pushes) -> PushedOut:
    """Push settings to every window of a scope: recorded, audited, and one signed bundle
    published to each window (its whole set of layers, so the latest says everything)."""
    a.check_window_settings(body.scope, dict(body.fields))
    pub = publisher(request, a)
    push_id, targets = a.push_window_settings(body.scope, dict(body.fields), body.note)
    return _out(push_id, pub.publish(targets, a.p.username))


@router.post(
    "/{push_id}/withdraw",
    responses={409: {"description": "Already withdrawn, or this server cannot push."}},
)
def withdraw(
    push_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
    body: WithdrawIn,
    request: Request,
    a: Pushes,
) -> PushedOut:
    """Withdraw a push: its windows get their settings again without it."""
    a.withdrawable_push(push_id)
    pub = publisher(request, a)
    targets = a.withdraw_window_settings(push_id, body.reason)
    return _out(None, pub.publish(targets, a.p.username))


class RepublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str = Field(max_length=128)


@router.post("/republish", responses=NOT_SET_UP)
def republish(body: RepublishIn, request: Request, a: Pushes) -> PushedOut:
    """Publish the current settings again to every window of a scope (after a broker
    outage left some not sent)."""
    targets = a.settings_targets(body.scope)
    pub = publisher(request, a)
    return _out(None, pub.publish(targets, a.p.username))
