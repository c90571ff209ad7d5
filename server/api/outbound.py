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
from server.api.schemas import Out

router = APIRouter(prefix="/api/outbound", tags=["outbound"])
Resends = Annotated[Access, changing("outbound")]


class UnitSwitchOut(Out):
    """One unit a target serves, on or off for it."""

    site: str = Field(description="One of your units this target serves.")
    enabled: bool = Field(description="False: switched off for this unit (deliveries wait).")
    by: str | None = Field(description="Who last switched it; null: never switched.")
    at_ms: int | None = Field(description="When it was last switched (UTC ms); null: never.")


class OutboundTargetOut(Out):
    """A configured target serving your units, and how its deliveries stand."""

    name: str = Field(description="The target's id in the outbound file.")
    type: Literal["http", "wecom", "dingtalk", "smtp"] = Field(
        description="What it is: an HTTP endpoint, a WeCom or DingTalk robot, e-mail."
    )
    host: str = Field(description="Where it sends (never the URL's path or secrets).")
    kinds: list[str] = Field(description="What it takes: evaluation, alert, ...")
    enabled: bool = Field(description="Enabled in the outbound file.")
    backlog: int = Field(description="Deliveries waiting (pending), in your units.")
    delivered: int = Field(description="Deliveries it took, in your units.")
    dead: int = Field(description="Deliveries given up on, in your units.")
    last_success_ms: int | None = Field(description="Its last delivery taken (UTC ms).")
    last_error_ms: int | None = Field(description="Its last failure (UTC ms).")
    last_error: str | None = Field(description="What that failure was.")
    units: list[UnitSwitchOut] = Field(description="Your units it serves, each on or off.")


class DeadDeliveryOut(Out):
    """A delivery given up on: resend it once the target takes it again."""

    id: int = Field(description="The delivery's number (for resend).")
    target: str = Field(description="The target's id in the outbound file.")
    key: str = Field(description="The idempotency key (an evaluation's event id).")
    kind: str = Field(description="What it carries: evaluation, alert, alert summary.")
    site: str | None = Field(description="The unit it concerns; null: several (a summary).")
    attempts: int = Field(description="How often it was tried.")
    created_ms: int = Field(description="When it was queued (UTC ms).")
    last_attempt_ms: int | None = Field(description="Its last try (UTC ms).")
    last_error: str | None = Field(description="Why its last try failed.")


class OutboundOut(Out):
    """The outbound links as your units see them."""

    targets: list[OutboundTargetOut] = Field(description="The targets serving your units.")
    dead: list[DeadDeliveryOut] = Field(description="The dead deliveries, newest first.")


class Resent(Out):
    ok: bool = Field(True, description="The delivery is queued again.")


class SwitchIn(BaseModel):
    """Which unit, on or off, and why. No URL or host: targets are the outbound file's."""

    model_config = ConfigDict(extra="forbid")

    site: Slug = Field(description="One of your units.")
    enabled: bool
    reason: StorableText = Field(min_length=1, max_length=500, description="For the audit log.")


class Switched(Out):
    ok: bool = Field(True, description="The switch is recorded.")


@router.get("")
def outbound_status(a: AccessDep) -> OutboundOut:
    """The configured targets serving your units, with last success, last error, backlog
    and dead count; and the dead deliveries (newest first)."""
    return OutboundOut.model_validate(a.outbound())


@router.post(
    "/deliveries/{delivery_id}/resend",
    responses={409: {"description": "The delivery is not dead."}},
)
def resend(delivery_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], a: Resends) -> Resent:
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
