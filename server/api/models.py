"""Request bodies of the HTTP API.

Bounded like the wire contract (``agent/protocol.py``): every integer fits its column
(epoch ms like ``TimestampMs``, counts in a 32-bit ``Integer``) and no string holds NUL,
which PostgreSQL text cannot store.
"""

from __future__ import annotations

from datetime import date
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.protocol import Count, Slug, StorableText


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseClose(ApiModel):
    """Closing a bad-review case. The server records when (its own clock): a close time is
    never what the caller says."""

    note: StorableText = Field(min_length=1, max_length=2000, description="What was done about it.")


class ClerkIn(ApiModel):
    clerk_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: StorableText = Field(min_length=1, max_length=64)
    site: Slug


class HelpdeskKpiIn(ApiModel):
    site: Slug
    window: Slug
    day: date
    requests: Count
    first_response_within_1min: Count
    resolved: Count

    @model_validator(mode="after")
    def _within_requests(self) -> Self:
        if self.first_response_within_1min > self.requests or self.resolved > self.requests:
            raise ValueError("counts cannot exceed requests")
        return self
