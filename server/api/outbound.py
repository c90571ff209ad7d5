"""Outbound links' routes: the targets' status and dead deliveries, and resend.

Reads and the resend go through ``Access`` (its "outbound" region); resending needs the
``outbound`` permission and is audited. No route takes a URL or a host: targets are set
in the server's outbound file only (server/outbound/targets.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from agent.protocol import Slug, StorableText
from server.api.access import Access, AccessDep, changing

router = APIRouter(prefix="/api/outbound", tags=["outbound"])
Resends = Annotated[Access, changing("outbound")]


class UnitSwitchOut(BaseModel):
    site: str = Field(description="One of your units this target serves.")
    enabled: bool = Field(description="False: switched off for this unit (deliveries wait).")
    by: str | None = Field(description="Who last switched it; null: never switched.")
    at_ms: int | None


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
    units: list[UnitSwitchOut] = Field(description="Your units it serves, each on or off.")


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


class SwitchIn(BaseModel):
    """Which unit, on or off, and why. No URL or host: targets are the outbound file's."""

    model_config = ConfigDict(extra="forbid")

    site: Slug = Field(description="One of your units.")
    enabled: bool
    reason: StorableText = Field(min_length=1, max_length=500, description="For the audit log.")


class Switched(BaseModel):
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


@router.post(
    "/targets/{name}/switch",
    responses={404: {"description": "No such target serving that unit."}},
)
def switch(
    name: Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")],
    body: SwitchIn,
    a: Resends,
) -> Switched:
    """Switch a configured target off or on for one of your units; audited."""
    a.switch_target(name, body.site, body.enabled, body.reason)
    return Switched()
