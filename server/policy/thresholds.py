"""The one thresholds model: what a clerk must reach in a month (A-PASS), and how each
saved version of it applies.

``PassThresholds`` holds every criterion's threshold, how inspectors' findings count and
whether an unvalidated perception flag counts. The server's defaults are overlaid, field
by field, with the latest version of the city's (``all``), the district's and the
centre's settings in force for the month (``from_month`` <= the month); each version
holds only the fields its scope sets. A verdict names the versions it was judged by.
Pure: rows in, thresholds out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The clauses an inspector's finding may concern (../shared/docs/service-standard.md),
#: including those no terminal observes (dress, voice, both hands).
FINDING_CLAUSES: Final = (
    "G-SMILE",
    "G-GAZE",
    "G-DRESS",
    "G-VOICE",
    "W-CALL",
    "W-TWO-STANDS",
    "W-BOTH-HANDS",
    "W-FAREWELL",
    "W-EVALUATE",
    "W-AWAY-SIGN",
    "F-RECEIVE",
    "H-PRIORITY",
)
FINDING_KINDS: Final = ("patrol", "video_check", "survey")
FINDING_OUTCOMES: Final = ("complied", "not_complied")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class PassThresholds(BaseModel):
    """What a clerk must reach in a month; every verdict lists the thresholds it was
    judged by and the versions they came from."""

    model_config = ConfigDict(extra="forbid")

    min_sessions: int = Field(
        20,
        ge=1,
        description="Fewer sessions in the month: no verdict. A conduct criterion (stand, "
        "smile, farewell) also needs this many sessions where its verdict was observed; "
        "with fewer it gives no judgement (insufficient observed sessions).",
    )
    stand_on_call_rate: float = Field(
        0.90, ge=0, le=1, description="Least stand-on-call rate (of the observed sessions)."
    )
    smile_at_greeting_rate: float = Field(
        0.85, ge=0, le=1, description="Least smile-at-greeting rate (of the observed sessions)."
    )
    farewell_stand_rate: float = Field(
        0.80, ge=0, le=1, description="Least farewell-stand rate (of the observed sessions)."
    )
    evaluation_coverage: float = Field(
        0.70, ge=0, le=1, description="Least share of sessions with an evaluation."
    )
    good_review_rate: float = Field(
        0.95, ge=0, le=1, description="Least share of good evaluations (basically satisfied+)."
    )
    max_away_without_sign_min: float = Field(
        30.0, ge=0, description="Most minutes away without the sign up in the month."
    )
    max_overdue_cases: int = Field(0, ge=0, description="Most bad-review cases overdue.")
    findings_count: bool = Field(
        True,
        description="Whether inspectors' findings (patrol, dual-recording spot check, "
        "survey) count in the monthly verdict. Off: they are shown, not judged.",
    )
    max_findings_not_complied: int = Field(
        0,
        ge=0,
        description="Most findings of 'not complied' in the month (withdrawn ones aside); "
        "more fails the month.",
    )
    evidence_limit: int = Field(50, ge=1, le=1000, description="Event ids listed per failure.")
    too_broad_counts: bool = Field(
        False,
        description="Whether the 'smile too broad' flag counts against a session in the "
        "smile-star ranking (A-STAR). Off: the flag is a classifier probability, not a "
        "validated intensity, so it is shown as information only until it is validated.",
    )


FIELDS: Final = tuple(PassThresholds.model_fields)


@dataclass(frozen=True)
class ThresholdVersion:
    """One saved version of one scope's thresholds (a ``threshold_sets`` row)."""

    version: int
    scope: str  # "all", "district:<name>" or "site:<slug>"
    from_month: str
    values: Mapping[str, Any]

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ThresholdVersion:
        return cls(int(row["version"]), row["scope"], row["from_month"], dict(row["values"]))


@dataclass(frozen=True)
class Resolved:
    """The thresholds a month is judged by, and where each field came from."""

    thresholds: PassThresholds
    versions: tuple[int, ...]  # city, district, centre: those that applied, in that order
    source: Mapping[str, int | None]  # field -> version that set it; None: the default

    def as_dict(self) -> dict[str, Any]:
        return {"versions": list(self.versions), "source": dict(self.source)}


def scopes_of(site: str, district: str | None) -> tuple[str, ...]:
    """The scopes whose settings apply to a centre, broadest first."""
    return ("all", *((f"district:{district}",) if district else ()), f"site:{site}")


def resolve(
    base: PassThresholds,
    versions: Iterable[ThresholdVersion],
    month: str,
    site: str,
    district: str | None,
) -> Resolved:
    """The defaults overlaid with the latest version in force for ``month`` of the city,
    the centre's district and the centre, in that order (the narrowest wins)."""
    chain = scopes_of(site, district)
    latest: dict[str, ThresholdVersion] = {}
    for v in versions:
        in_force = v.scope in chain and v.from_month <= month
        if in_force and (v.scope not in latest or v.version > latest[v.scope].version):
            latest[v.scope] = v
    values = base.model_dump()
    source: dict[str, int | None] = dict.fromkeys(values)
    used: list[int] = []
    for scope in chain:
        if (got := latest.get(scope)) is not None:
            used.append(got.version)
            for name, value in got.values.items():
                if name in values:
                    values[name] = value
                    source[name] = got.version
    return Resolved(PassThresholds.model_validate(values), tuple(used), source)


class ThresholdsError(ValueError):
    """A version that cannot be saved; the message names the field."""


def check_version(scope: str, from_month: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a new version, checked field by field against the model (unknown
    fields and out-of-range values are refused, naming the field); the scope's form and
    the month are checked too. Returns the values as the model types them."""
    if not _MONTH.match(from_month):
        raise ThresholdsError(f"from_month: must be YYYY-MM, not {from_month!r}")
    if scope != "all" and not re.match(r"^(district:.{1,80}|site:[a-z0-9][a-z0-9-]{0,31})$", scope):
        raise ThresholdsError(f"scope: must be all, district:<name> or site:<slug>, not {scope!r}")
    if not values:
        raise ThresholdsError("values: a version sets at least one field")
    for name in values:
        if name not in FIELDS:
            raise ThresholdsError(f"values.{name}: not a threshold ({', '.join(FIELDS)})")
    try:
        checked = PassThresholds.model_validate(PassThresholds().model_dump() | dict(values))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ThresholdsError(f"values.{err['loc'][0]}: {err['msg']}") from None
    return {name: getattr(checked, name) for name in values}
