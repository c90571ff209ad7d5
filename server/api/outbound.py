"""Outbound links' routes: the targets' status and dead deliveries, and resend.

Reads and the resend go through ``Access`` (its "outbound" region); resending needs the
``outbound`` permission and is audited. No route takes a URL or a host: targets are set
in the server's outbound file only (server/outbound/targets.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from server.api.access import Access, AccessDep, changing

router = APIRouter(prefix="/api/outbound", tags=["outbound"])
Resends = Annotated[Access, changing("outbound")]


class OutboundTargetOut(BaseModel):
    name: str = Field(description="The target's id in the outbound file.")
    type: Literal["http", "wecom", "dingtalk", "smtp"]
    host: str = Field(description="Where it sends (never the URL's path or secrets).")
    kinds: list[str] = Field(description="What it takes: evaluation, alert, ...")
    enabled: bool
    backlog: int = Field(description="Deliveries waiting (pending), in your units.")
    delivered: int
    dead: int = Field(description="Deliveries given up on, in your units.")
    last_success_ms: int | None
    last_error_ms: int | None
    last_error: str | None


class DeadDeliveryOut(BaseModel):
    id: int
    target: str
    key: str = Field(description="The idempotency key (an evaluation's event id).")
    kind: str
    site: str | None
    attempts: int
    created_ms: int
    last_attempt_ms: int | None
    last_error: str | None


class OutboundOut(BaseModel):
    targets: list[OutboundTargetOut]
    dead: list[DeadDeliveryOut]


class Resent(BaseModel):
    ok: bool = True


@router.get("")
def outbound_status(a: AccessDep) -> OutboundOut:
    """The configured targets serving your units, with last success, last error, backlog
    and dead count; and the dead deliveries (newest first)."""
    return OutboundOut.model_validate(a.outbound())


@router.post(
    "/deliveries/{delivery_id}/resend",
    responses={409: {"description": "The delivery is not dead."}},
)
def resend(delivery_id: int, a: Resends) -> Resent:
    """Send a dead delivery again (attempts counted afresh); audited."""
    a.resend_delivery(delivery_id)
    return Resent()
