"""The assessment people work with (A-PASS, A-REVIEW): thresholds versions, inspectors'
findings, verdict sign-off, probation decisions and clerks' appeals.

Every route reads and changes through ``Access`` (scope, audit); changes need their
permission (``server.accounts.CAN``): findings, sign-off and probation the inspectors
and the district, thresholds the district, appeals a clerk's own account, their
resolution the centre's manager or the district.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from fastapi import APIRouter
from pydantic import AfterValidator, Field, model_validator

from agent.protocol import StorableText, TimestampMs
from server.api.access import Access, AccessDep, changing
from server.api.models import ApiModel
from server.api.schemas import (
    AppealDetail,
    AppealOut,
    FindingOut,
    ProbationOut,
    Result,
    ThresholdsOut,
    ThresholdsSaved,
    VerdictOut,
)
from server.policy.thresholds import FINDING_CLAUSES
from server.store.assessment import CORRECTABLE

router = APIRouter(prefix="/api")

Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
Reason = Annotated[StorableText, Field(min_length=3, max_length=2000)]


#: An attachment is a reference to evidence kept elsewhere (a recording's id in the
#: dual-recording system, a survey's number): short text, never a file, a data: URI or
#: an image (PIPL: no image leaves the hall's systems through this one).
def _a_reference(value: str) -> str:
    if value.lower().startswith("data:"):
        raise ValueError("an attachment is a reference, never the data itself (data: URI)")
    return value


Reference = Annotated[
    StorableText,
    Field(min_length=1, max_length=200, pattern=r"^[^\s<>]{1,200}$"),
    AfterValidator(_a_reference),
]


# ----------------------------------------------------------------- thresholds


class ThresholdsIn(ApiModel):
    scope: StorableText = Field(
        max_length=96, description="all, district:<name> or site:<slug>: whose thresholds."
    )
    from_month: Month = Field(description="The first month the version applies to.")
    values: dict[str, bool | int | float] = Field(
        description="Only the thresholds this scope sets (the others: the broader scope's)."
    )
    reason: Reason = Field(description="Why (on the record).")


@router.get("/thresholds")
def thresholds(site: str, month: Month, a: AccessDep) -> ThresholdsOut:
    """A centre's thresholds for a month, where each came from, and the versions of its
    city, district and centre (newest first)."""
    return ThresholdsOut.model_validate(a.thresholds_view(site, month))


@router.post("/thresholds", status_code=201)
def save_thresholds(
    body: ThresholdsIn, a: Annotated[Access, changing("thresholds")]
) -> ThresholdsSaved:
    """Save a new version of a scope's thresholds (versions are never edited)."""
    version = a.save_thresholds(body.scope, body.from_month, body.values, body.reason)
    return ThresholdsSaved(version=version)


# ----------------------------------------------------------------- findings


class FindingIn(ApiModel):
    clerk_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    kind: Literal["patrol", "video_check", "survey"] = Field(
        description="patrol observation, dual-recording (双录) spot check, or survey result."
    )
    criterion: Literal[FINDING_CLAUSES] = Field(  # type: ignore[valid-type]
        description="The clause of the standard it concerns."
    )
    outcome: Literal["complied", "not_complied"]
    note: StorableText = Field(min_length=1, max_length=2000, description="What was seen.")
    session_id: str | None = Field(
        None, max_length=36, description="The session it refers to (a video check needs one)."
    )
    video_ms: int | None = Field(
        None, ge=0, le=86_400_000, description="The position in the session's recording (ms)."
    )
    observed_ms: TimestampMs | None = Field(
        None, description="When it was observed; default: the session's time, else now."
    )
    attachments: list[Reference] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _video_check_has_session(self) -> Self:
        if self.kind == "video_check" and self.session_id is None:
            raise ValueError("session_id: a dual-recording spot check names its session")
        return self


class WithdrawIn(ApiModel):
    reason: Reason


@router.post("/findings", status_code=201)
def record_finding(body: FindingIn, a: Annotated[Access, changing("finding")]) -> FindingOut:
    """Record a finding about a clerk; it counts in the month's verdict by the thresholds."""
    return FindingOut.model_validate(a.finding(a.record_finding(body.model_dump())))


@router.post("/findings/{finding_id}/withdraw")
def withdraw_finding(
    finding_id: str, body: WithdrawIn, a: Annotated[Access, changing("finding")]
) -> FindingOut:
    """Withdraw a finding with a reason (it stays listed, withdrawn, and no longer counts)."""
    a.withdraw_finding(finding_id, body.reason)
    return FindingOut.model_validate(a.finding(finding_id))


@router.get("/findings")
def list_findings(clerk_id: str, period: str, a: AccessDep) -> list[FindingOut]:
    """A clerk's findings in a period (withdrawn ones marked)."""
    return [FindingOut.model_validate(f) for f in a.findings(clerk_id, period)]


# ----------------------------------------------------------------- sign-off, probation


class DecisionIn(ApiModel):
    action: Literal["confirm", "override"]
    result: Result | None = Field(None, description="An override's result.")
    reason: Reason


class ProbationIn(ApiModel):
    action: Literal["start", "end"]
    outcome: Literal["passed", "returned_to_agency"] | None = Field(
        None, description="An end's outcome."
    )
    reason: Reason


@router.post("/assessment/{clerk_id}/{month}/decision")
def decide_verdict(
    clerk_id: str, month: Month, body: DecisionIn, a: Annotated[Access, changing("sign_off")]
) -> VerdictOut:
    """Confirm a clerk's computed monthly verdict, or override it with a reason."""
    v = a.decide_verdict(clerk_id, month, body.action, body.result, body.reason)
    return VerdictOut.model_validate({k: x for k, x in v.items() if k != "decision"})


@router.post("/probation/{clerk_id}/{month}/decision")
def decide_probation(
    clerk_id: str, month: Month, body: ProbationIn, a: Annotated[Access, changing("probation")]
) -> ProbationOut:
    """Start a clerk's probation for a month (after a failed month), or end it with an
    outcome: passed, or returned to the labour agency."""
    return ProbationOut.model_validate(
        a.decide_probation(clerk_id, month, body.action, body.outcome, body.reason)
    )


# ----------------------------------------------------------------- appeals


class AppealIn(ApiModel):
    session_id: str | None = Field(None, max_length=36, description="The session contested.")
    criterion: Literal[CORRECTABLE] | None = Field(  # type: ignore[valid-type]
        None, description="The session's verdict contested."
    )
    month: Month | None = Field(None, description="The monthly verdict contested.")
    note: StorableText = Field(min_length=3, max_length=2000, description="Why.")


class ResolveIn(ApiModel):
    upheld: bool
    resolution: Literal["corrected", "not_counted"] | None = Field(
        None,
        description="An upheld appeal on a session: its verdict corrected to complied, or "
        "the session not counted in any measure.",
    )
    result: Result | None = Field(None, description="An upheld appeal on a monthly verdict.")
    note: Reason


@router.post("/appeals", status_code=201)
def file_appeal(body: AppealIn, a: Annotated[Access, changing("appeal")]) -> AppealDetail:
    """A clerk contests one of its sessions' verdicts, or a monthly verdict."""
    appeal_id = a.file_appeal(body.note, body.session_id, body.criterion, body.month)
    return AppealDetail.model_validate(a.appeal(appeal_id))


@router.get("/appeals")
def list_appeals(
    a: AccessDep,
    status: Literal["open", "upheld", "rejected"] | None = None,
    site: str | None = None,
    month: Month | None = None,
) -> list[AppealOut]:
    """Appeals of your units (a clerk: its own), newest first."""
    return [AppealOut.model_validate(x) for x in a.appeals(status, site, month)]


@router.get("/appeals/{appeal_id}")
def appeal(appeal_id: str, a: AccessDep) -> AppealDetail:
    """An appeal with its session, the session's events and the corrections made."""
    return AppealDetail.model_validate(a.appeal(appeal_id))


@router.post("/appeals/{appeal_id}/resolve")
def resolve_appeal(
    appeal_id: str, body: ResolveIn, a: Annotated[Access, changing("resolve_appeal")]
) -> AppealDetail:
    """Uphold or reject an open appeal with a note; the month is recomputed and the
    appeal keeps the result before and after."""
    return AppealDetail.model_validate(
        a.resolve_appeal(appeal_id, body.upheld, body.resolution, body.result, body.note)
    )
