"""Request bodies and responses of the bad-review case workflow (server/api/cases.py).

Bounded like the rest of the API (``server/api/models.py``): no string holds NUL, every
time fits its column. Times a person gives are only the call-back's (when the citizen
was called); every other time is the server's clock.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agent.protocol import StorableText, TimestampMs
from server.api.models import ApiModel
from server.api.schemas import CaseOut, Out, TimeMs
from server.policy.casework import CallbackOutcome, Missing, Step

Note = Annotated[StorableText, Field(max_length=2000)]
CALLBACK_OUTCOME = (
    "reached_satisfied: reached, and satisfied with what was done; reached_not_satisfied: "
    "reached, not satisfied; unreachable: the citizen could not be reached."
)

# ----------------------------------------------------------------- requests


class CaseAssign(ApiModel):
    """Assign the case to a user of its centre."""

    assigned_to: str = Field(
        pattern=r"^[\w.@-]{1,64}$",
        description="The username: an active user who sees the case's centre and works cases "
        "(GET /api/cases/{id} lists them as assignable).",
    )
    note: Note | None = Field(None, description="Why, or what to do first.")


class CaseCallback(ApiModel):
    """The call-back to the citizen (every bad review gets one)."""

    at_ms: TimestampMs = Field(
        description="When the call was made, UTC ms: not before the review, not in the future."
    )
    outcome: CallbackOutcome = Field(description=CALLBACK_OUTCOME)
    note: Note | None = Field(None, description="What the citizen said.")


class CaseRectification(ApiModel):
    """What the centre did about the review."""

    note: Note = Field(min_length=1, description="The rectification (整改), in words.")


class CaseCloseIn(ApiModel):
    """Close the case now (the server's clock; a close time is never the caller's)."""

    note: Note = Field(min_length=1, description="What was done about it.")


class CaseReopen(ApiModel):
    """Reopen a closed case; its rectification is to be recorded again."""

    reason: Note = Field(min_length=1, description="Why the case is not done.")


# ----------------------------------------------------------------- responses


class CaseRecord(CaseOut):
    """A case with its workflow and its clock at the time of the request."""

    closed_ms: TimeMs | None = Field(
        description="When it was closed (the server's clock), UTC ms; null while open."
    )
    note: str | None = Field(description="The close's note; null while open.")
    assigned_to: str | None = Field(description="The username it is assigned to.")
    assigned_ms: TimeMs | None = Field(description="When it was last assigned, UTC ms.")
    callback_ms: TimeMs | None = Field(
        description="When the latest call-back to the citizen was made, UTC ms; null: none yet."
    )
    callback_outcome: CallbackOutcome | None = Field(description=CALLBACK_OUTCOME)
    callback_note: str | None = Field(description="The latest call-back's note.")
    rectification: str | None = Field(
        description="The rectification recorded; null: none yet (or none since a reopening)."
    )
    rectified_ms: TimeMs | None = Field(description="When it was recorded, UTC ms.")
    closed_by: str | None = Field(description="Who closed it; null while open.")
    reopened: int = Field(description="How many times it was reopened.")
    due_day: str = Field(description="The local date (YYYY-MM-DD) it is due by, end of day.")
    working_days_left: int | None = Field(
        description="Open: the official working days after today up to the due day (0 on the "
        "due day); negative once overdue (working days since the due day). Null when closed."
    )
    overdue: bool = Field(description="Open and past its due time (a case_overdue alert).")


class CaseAction(Out):
    """One step on the record."""

    id: int = Field(description="The history entry's number (in order).")
    case_id: str = Field(description="The case (the bad evaluation's event id).")
    site: str = Field(description="The case's centre.")
    action: Step = Field(description="assign, callback, rectify, close or reopen.")
    by: str = Field(description="The username who took the step.")
    at_ms: TimeMs = Field(description="When (the server's clock), UTC ms.")
    note: str | None = Field(description="The step's note, rectification or reason.")
    detail: dict[str, str | int | None] | None = Field(
        description="assign: assigned_to; callback: called_ms and outcome."
    )


class Assignee(Out):
    """A user the case can be assigned to."""

    username: str = Field(description="What /assign takes.")
    display_name: str = Field(description="The name to show.")
    role: str = Field(description="district_admin, centre_manager or inspector.")
    scope: str = Field(description="site:<slug> (the centre's own), district:<name> or all.")


class CaseDetail(CaseRecord):
    """One case, its history and what it still needs."""

    missing_to_close: list[Missing] = Field(
        description="What must be recorded before it can close: callback, rectification."
    )
    actions: list[CaseAction] = Field(description="Every step, oldest first.")
    assignable: list[Assignee] = Field(
        description="Who it can be assigned to; empty for a principal who does not work cases."
    )


class CaseStepped(Out):
    """A step recorded."""

    case_id: str = Field(description="The case.")
    action: Step = Field(description="The step: assign, callback, rectify or reopen.")
    at_ms: TimeMs = Field(description="When the step was recorded (the server's clock), UTC ms.")


CaseFilter = Literal["open", "overdue", "closed"]
