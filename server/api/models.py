"""Request bodies of the HTTP API."""

from __future__ import annotations

from datetime import date
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.protocol import Slug


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseClose(ApiModel):
    note: str = Field(min_length=1, max_length=2000, description="What was done about it.")
    at_ms: int = Field(ge=0, description="When it was rectified, UTC ms.")


class ClerkIn(ApiModel):
    clerk_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=64)
    site: Slug


class SignIn(ApiModel):
    clerk_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    site: Slug
    window: Slug
    start_ms: int = Field(ge=0)
    end_ms: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        return self


class HelpdeskKpiIn(ApiModel):
    site: Slug
    window: Slug
    day: date
    requests: int = Field(ge=0)
    first_response_within_1min: int = Field(ge=0)
    resolved: int = Field(ge=0)

    @model_validator(mode="after")
    def _within_requests(self) -> Self:
        if self.first_response_within_1min > self.requests or self.resolved > self.requests:
            raise ValueError("counts cannot exceed requests")
        return self
