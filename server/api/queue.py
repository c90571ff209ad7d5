"""The queue-system bridge, version 1: a hall's queue-management system (叫号系统) tells
the aggregator who signed in at which window and which ticket it called there.

It authenticates with a service token granted ``queue`` (``warmwindow token create
--grant queue``), scoped to its centre. The interface is documented for vendors in
``docs/queue-interface.md``; ``warmwindow queue replay`` feeds it a recorded day.

* ``POST /api/queue/v1/calls``: one call. Stored once by ``call_id`` (a replayed or
  repeated call answers ``duplicate: true`` and opens nothing new), then sent to the
  terminal as its ``call`` command; the bell stays the fallback. The call's clerk, when
  given and not the one on shift, is signed in there first (source ``queue``).
* ``POST /api/queue/v1/sign-in`` / ``sign-out``: the clerk's login at the queue system.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from agent.protocol import (
    CallId,
    ClerkId,
    Command,
    PriorityCategory,
    ShortText,
    Slug,
    TimestampMs,
    now_ms,
)
from server.api.access import Access, changing
from server.api.models import ApiModel
from server.api.schemas import Out, SiteSlug, TimeMs, WindowSlug
from server.store.calls import CALL_FIELDS, call_cmd_id

router = APIRouter(prefix="/api/queue/v1")

#: The Command schema version that carries the call's fields (a terminal says in its
#: retained state which it takes; an older one gets ticket and priority only).
CALL_FIELDS_COMMANDS = 2


class QueueCall(ApiModel):
    """One call of a ticket to a window, as the queue system made it."""

    call_id: CallId = Field(description="The queue system's id of this call (idempotency key).")
    site: Slug
    window: Slug
    ticket: ShortText = Field(min_length=1, description="The ticket number called, e.g. A013.")
    called_ms: TimestampMs | None = Field(None, description="When it was called, UTC ms.")
    matter_code: ShortText | None = Field(None, description="Service matter (事项) code.")
    matter_name: ShortText | None = Field(None, description="Service matter name.")
    priority_category: PriorityCategory | None = Field(
        None, description="H-PRIORITY category; null: not a priority citizen."
    )
    clerk_id: ClerkId | None = Field(None, description="Staff id logged in at that window.")
    case_number: ShortText | None = Field(
        None, description="Service case number (办件编号), when the business system gave it."
    )


class QueueSignIn(ApiModel):
    site: Slug
    window: Slug
    clerk_id: ClerkId
    at_ms: TimestampMs | None = Field(None, description="When, UTC ms (default now).")


class QueueSignOut(ApiModel):
    site: Slug
    window: Slug
    at_ms: TimestampMs | None = Field(None, description="When, UTC ms (default now).")


class CallOut(Out):
    """What became of a call."""

    call_id: str = Field(description="The call.")
    duplicate: bool = Field(description="Stored before: nothing new was opened or sent.")
    sent: bool = Field(description="The terminal's broker took the call command (QoS 1).")
    full_fields: bool = Field(
        description="The terminal takes the call's matter, category and case number; "
        "otherwise it got ticket and priority, and the server joins the rest."
    )
    signed_in: bool = Field(description="The call's clerk was signed in at the window by it.")


class ShiftOut(Out):
    """The sign-in or sign-out done."""

    clerk_id: str = Field(description="The clerk.")
    site: SiteSlug
    window: WindowSlug
    at_ms: TimeMs = Field(description="From when (sign-in) or when (sign-out), UTC ms.")


@router.post(
    "/calls",
    status_code=201,
    responses={200: {"model": CallOut, "description": "Stored before: nothing new."}},
)
def call(
    body: QueueCall, request: Request, response: Response, a: Annotated[Access, changing("queue")]
) -> CallOut:
    """Store the call once, sign its clerk in if needed, and send it to the terminal."""
    called = body.called_ms if body.called_ms is not None else now_ms()
    stored, signed_in = a.queue_call(body.model_dump() | {"called_ms": called})
    if not stored:
        response.status_code = 200
        return CallOut(
            call_id=body.call_id, duplicate=True, sent=False, full_fields=False, signed_in=False
        )
    full = a.window_commands(body.site, body.window) >= CALL_FIELDS_COMMANDS
    fields: dict[str, Any] = {"ticket": body.ticket, "priority": body.priority_category is not None}
    if full:
        fields |= body.model_dump(include=set(CALL_FIELDS))
    cmd = Command(
        cmd_id=call_cmd_id(body.call_id),
        action="call",
        **fields,
    )
    ingest = request.app.state.ingest
    sent = bool(ingest is not None and ingest.send_command(cmd, body.site, body.window))
    if sent:
        a.call_sent(body.call_id)
    return CallOut(
        call_id=body.call_id, duplicate=False, sent=sent, full_fields=full, signed_in=signed_in
    )


@router.post("/sign-in", status_code=201)
def sign_in(body: QueueSignIn, a: Annotated[Access, changing("queue")]) -> ShiftOut:
    """The clerk logged in at the queue system for that window (the one attribution rule)."""
    done = a.sign_in(body.clerk_id, body.site, body.window, body.at_ms, None, source="queue")
    return ShiftOut(clerk_id=body.clerk_id, site=body.site, window=body.window, at_ms=done.start_ms)


@router.post("/sign-out")
def sign_out(body: QueueSignOut, a: Annotated[Access, changing("queue")]) -> ShiftOut:
    """The clerk at that window logged out of the queue system."""
    clerk, window, at = a.sign_out(body.site, body.window, None, body.at_ms, source="queue")
    return ShiftOut(clerk_id=clerk, site=body.site, window=window, at_ms=at)
