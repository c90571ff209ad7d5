"""H-ONLINE, the help desk's online assistance standard: every request answered within
one minute, and at least 90 % of requests resolved (service-standard.md). The figures are
the help-desk system's own, per window and day; this module only judges them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

#: The share of requests that must be resolved.
RESOLVED_TARGET: Final = 0.9


@dataclass(frozen=True)
class HOnline:
    """One window's day, or any sum of them."""

    requests: int
    first_response_within_1min: int
    resolved: int

    def __add__(self, other: HOnline) -> HOnline:
        return HOnline(
            self.requests + other.requests,
            self.first_response_within_1min + other.first_response_within_1min,
            self.resolved + other.resolved,
        )

    @property
    def first_response_rate(self) -> float | None:
        n = self.requests
        return round(self.first_response_within_1min / n, 4) if n else None

    @property
    def resolved_rate(self) -> float | None:
        return round(self.resolved / self.requests, 4) if self.requests else None

    @property
    def meets_standard(self) -> bool | None:
        """Every request answered within a minute and 90 % resolved; None without any."""
        n = self.requests
        if not n:
            return None
        return self.first_response_within_1min == n and self.resolved >= RESOLVED_TARGET * n

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "first_response_rate": self.first_response_rate,
            "resolved_rate": self.resolved_rate,
            "meets_standard": self.meets_standard,
        }
