"""The bad-review case workflow's routes: list and one case with its history; assign,
call-back, rectification, close, reopen. Every read and step goes through ``Access``
(its "case workflow" region); the steps need the ``close_case`` permission."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from server.api.access import Access, AccessDep, changing
from server.api.case_schemas import (
    CaseAssign,
    CaseCallback,
    CaseCloseIn,
    CaseDetail,
    CaseFilter,
    CaseRecord,
    CaseRectification,
    CaseReopen,
    CaseStepped,
)
from server.api.schemas import Closed

router = APIRouter(prefix="/api/cases", tags=["cases"])
Works = Annotated[Access, changing("close_case")]
STEP: dict[int | str, dict[str, Any]] = {
    409: {"description": "The step cannot be taken now; the detail says why."}
}
NOT_OF_CENTRE: dict[int | str, dict[str, Any]] = {
    422: {"description": "The user named does not work this centre's cases."}
}


@router.get("")
def list_cases(
    a: AccessDep, status: CaseFilter | None = None, site: str | None = None
) -> list[CaseRecord]:
    """Bad-review cases by due time with their 15-working-day clock: ``open``,
    ``overdue`` (open and past due), ``closed``, or all."""
    return [CaseRecord.model_validate(c) for c in a.case_list(status, site)]


@router.get("/{case_id}")
def case(case_id: str, a: AccessDep) -> CaseDetail:
    """One case, its history, what a close still needs, and who it can be assigned to."""
    return CaseDetail.model_validate(a.case(case_id))


@router.post("/{case_id}/assign", responses=STEP | NOT_OF_CENTRE)
def assign(case_id: str, body: CaseAssign, a: Works) -> CaseStepped:
    """Assign the case to a user of its centre (by username)."""
    at = a.assign_case(case_id, body.assigned_to, body.note)
    return CaseStepped(case_id=case_id, action="assign", at_ms=at)


@router.post("/{case_id}/callback", responses=STEP)
def callback(case_id: str, body: CaseCallback, a: Works) -> CaseStepped:
    """Record the call-back to the citizen: when, the outcome, a note."""
    at = a.record_callback(case_id, body.at_ms, body.outcome, body.note)
    return CaseStepped(case_id=case_id, action="callback", at_ms=at)


@router.post("/{case_id}/rectification", responses=STEP)
def rectification(case_id: str, body: CaseRectification, a: Works) -> CaseStepped:
    """Record what the centre did about the review."""
    at = a.record_rectification(case_id, body.note)
    return CaseStepped(case_id=case_id, action="rectify", at_ms=at)


@router.post("/{case_id}/close", responses=STEP)
def close(case_id: str, body: CaseCloseIn, a: Works) -> Closed:
    """Close the case now (the server's clock): only once a call-back and a
    rectification are recorded (409 says which is missing)."""
    a.close_case(case_id, body.note)
    return Closed(closed=True)


@router.post("/{case_id}/reopen", responses=STEP)
def reopen(case_id: str, body: CaseReopen, a: Works) -> CaseStepped:
    """Reopen a closed case with a reason (counted); record the rectification again."""
    at = a.reopen_case(case_id, body.reason)
    return CaseStepped(case_id=case_id, action="reopen", at_ms=at)
