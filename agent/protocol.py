"""The wire contract between window terminals and the aggregator (version 1).

Both sides import this module and nothing else to agree on topics and payloads.

Topic tree (``<site>`` and ``<window>`` are lower-case slugs)::

    ww/v1/<site>/<window>/availability  retained, QoS 1  "online" / "offline" (last will)
    ww/v1/<site>/<window>/event         QoS 1, never retained   one conduct event
    ww/v1/<site>/<window>/state         retained, QoS 1   what the window looks like now
    ww/v1/<site>/<window>/health        QoS 0             terminal health every 60 s
    ww/v1/<site>/<window>/config        retained, QoS 1   server -> terminal
    ww/v1/<site>/<window>/cmd           QoS 1, never retained   server/queue system -> terminal
    ww/v1/<site>/<window>/reply         QoS 1             terminal's answer to a cmd

Privacy: no payload can carry an image. Every model forbids unknown fields, every
string is short and bounded, every list is bounded, and there is no bytes field;
``tests/test_protocol.py`` walks the JSON schemas to keep it so.

Storable: whatever validates here, the aggregator's store can hold. Every integer fits
the column it lands in (64-bit signed ``BigInteger``, 32-bit ``Integer`` for counts),
every float is finite (PostgreSQL's ``json`` refuses ``NaN`` and ``Infinity``), and no
string holds NUL (PostgreSQL text cannot). A message the store refused used to stop the
whole ingest batch it rode in.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "ww/v1"

#: Largest value of a signed 64-bit column (``BigInteger``).
INT64_MAX: Final = 2**63 - 1
#: Largest value of a signed 32-bit column (``Integer``).
INT32_MAX: Final = 2**31 - 1
#: Text the store can hold: no NUL (PostgreSQL text cannot store it). The pattern also
#: refuses lone surrogates, which no JSON document can decode to anyway.
STORABLE_TEXT: Final = r"^[^\x00]*$"

#: Any string of the contract, or of the HTTP API: storable (bound its length on use).
StorableText = Annotated[str, Field(pattern=STORABLE_TEXT)]
#: A site or window identifier: short lower-case slug, safe in a topic level.
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", max_length=32)]
#: Short bounded text (model and config versions, fault codes, ticket numbers).
ShortText = Annotated[StorableText, Field(max_length=64)]
#: Milliseconds since the Unix epoch, UTC.
TimestampMs = Annotated[int, Field(ge=0, le=32_503_680_000_000)]
#: A device sequence number: from 1, and it fits a ``BigInteger``.
Seq = Annotated[int, Field(ge=1, le=INT64_MAX)]
#: A delay or duration at the window, ms: at most a week.
DurationMs = Annotated[int, Field(ge=0, le=7 * 86_400_000)]
#: A count (outbox depth, dropped frames, presses): fits an ``Integer``.
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def now_ms() -> int:
    """The wall clock as the contract counts time: milliseconds since the epoch, UTC.
    The one clock helper of both sides; code that decides takes time as an argument."""
    return time.time_ns() // 1_000_000


class Channel(StrEnum):
    AVAILABILITY = "availability"
    EVENT = "event"
    STATE = "state"
    HEALTH = "health"
    CONFIG = "config"
    CMD = "cmd"
    REPLY = "reply"


#: (qos, retain) per channel: the fleet conventions both sides rely on.
CHANNEL_QOS: Final[dict[Channel, tuple[int, bool]]] = {
    Channel.AVAILABILITY: (1, True),
    Channel.EVENT: (1, False),
    Channel.STATE: (1, True),
    Channel.HEALTH: (0, False),
    Channel.CONFIG: (1, True),
    Channel.CMD: (1, False),
    Channel.REPLY: (1, False),
}

ONLINE: Final = "online"
OFFLINE: Final = "offline"


def topic(site: str, window: str, channel: Channel) -> str:
    return f"{TOPIC_ROOT}/{site}/{window}/{channel.value}"


def parse_topic(name: str) -> tuple[str, str, Channel]:
    """Split a topic into (site, window, channel); raise ValueError if it is not ours."""
    parts = name.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise ValueError(f"not a WarmWindow v1 topic: {name!r}")
    try:
        channel = Channel(parts[4])
    except ValueError:
        raise ValueError(f"unknown channel in topic {name!r}") from None
    return parts[2], parts[3], channel


def subscription(channel: Channel, site: str = "+", window: str = "+") -> str:
    return f"{TOPIC_ROOT}/{site}/{window}/{channel.value}"


class Clause(StrEnum):
    """Clause IDs of the service standard (shared/docs/service-standard.md)."""

    G_SMILE = "G-SMILE"
    W_CALL = "W-CALL"
    W_TWO_STANDS = "W-TWO-STANDS"
    W_FAREWELL = "W-FAREWELL"
    W_EVALUATE = "W-EVALUATE"
    W_AWAY_SIGN = "W-AWAY-SIGN"
    F_RECEIVE = "F-RECEIVE"
    H_PRIORITY = "H-PRIORITY"


class Rating(StrEnum):
    """The 5-level 好差评 scale, best first."""

    VERY_SATISFIED = "very_satisfied"  # 非常满意
    SATISFIED = "satisfied"  # 满意
    BASIC = "basically_satisfied"  # 基本满意
    DISSATISFIED = "dissatisfied"  # 不满意
    VERY_DISSATISFIED = "very_dissatisfied"  # 非常不满意

    @property
    def is_bad(self) -> bool:
        return self in (Rating.DISSATISFIED, Rating.VERY_DISSATISFIED)


RATING_ZH: Final[dict[Rating, str]] = {
    Rating.VERY_SATISFIED: "非常满意",
    Rating.SATISFIED: "满意",
    Rating.BASIC: "基本满意",
    Rating.DISSATISFIED: "不满意",
    Rating.VERY_DISSATISFIED: "非常不满意",
}


class Wire(BaseModel):
    """Base of every payload: closed, so nothing unexpected (an image) can ride along."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- events


class EventHeader(Wire):
    schema_version: Literal[1] = Field(1, description="Wire schema version.")
    event_id: uuid.UUID = Field(description="Unique id; the server stores each id once.")
    site: Slug = Field(description="Site (service centre) slug; must match the topic.")
    window: Slug = Field(description="Window slug; must match the topic.")
    seq: Seq = Field(description="Device sequence number, persisted across reboots.")
    boot_id: uuid.UUID = Field(description="Changes every time the agent starts.")
    ts_ms: TimestampMs = Field(description="When it happened on the device, UTC ms.")
    sent_ms: TimestampMs | None = Field(None, description="When first handed to MQTT.")
    historical: bool = Field(
        False, description="True when replayed from the outbox after an outage."
    )
    session_id: uuid.UUID | None = Field(None, description="Service session it belongs to.")
    clauses: tuple[Clause, ...] = Field(
        (), max_length=8, description="Clause IDs of the standard this event bears on."
    )


class SessionOpened(EventHeader):
    kind: Literal["session_opened"] = "session_opened"
    source: Literal["bell", "queue", "presence"] = Field(description="What opened it.")
    ticket: ShortText | None = Field(None, description="Queue ticket number, if any.")
    priority: bool = Field(False, description="Priority citizen (H-PRIORITY).")


class StoodUp(EventHeader):
    kind: Literal["stood_up"] = "stood_up"
    phase: Literal["greeting", "farewell"]
    on_time: bool = Field(description="Within the configured limit.")
    after_ms: DurationMs | None = Field(
        None, description="Delay from the call (greeting) or end (farewell); None if never."
    )


class Smiled(EventHeader):
    kind: Literal["smiled"] = "smiled"
    phase: Literal["greeting", "farewell"]
    on_time: bool
    after_ms: DurationMs | None = None
    score: Score | None = Field(None, description="Peak smile score in the window.")
    too_broad: bool = Field(False, description="Intensity beyond 'not too broad'.")


class Evaluated(EventHeader):
    kind: Literal["evaluated"] = "evaluated"
    rating: Rating
    suspect: bool = Field(False, description="Kept but doubtful, see reason.")
    suspect_reason: Literal["no_session", "sign_up", "repeat", "already_evaluated"] | None = None


class SessionSummary(EventHeader):
    kind: Literal["session_summary"] = "session_summary"
    opened_ms: TimestampMs
    closed_ms: TimestampMs
    closed_by: Literal["evaluation", "finish_key", "next_call", "timeout", "shutdown"]
    stood_on_call: bool
    stand_after_ms: DurationMs | None = None
    smiled_at_greeting: bool
    smile_after_ms: DurationMs | None = None
    smile_peak: Score | None = None
    smile_too_broad: bool = False
    stood_at_farewell: bool
    see_off_ms: DurationMs | None = Field(None, description="How long the clerk stayed standing.")
    rating: Rating | None = None
    priority: bool = False


class Away(EventHeader):
    kind: Literal["away"] = "away"
    started_ms: TimestampMs
    ended_ms: TimestampMs | None = Field(None, description="None while still away.")
    with_sign: bool
    violation: bool = Field(description="Away during opening hours without the sign.")


class SignWhilePresent(EventHeader):
    kind: Literal["sign_while_present"] = "sign_while_present"
    started_ms: TimestampMs
    duration_ms: DurationMs


class Fault(EventHeader):
    kind: Literal["fault"] = "fault"
    code: Literal["camera_dead", "camera_frozen", "model_error", "outbox_full", "gpio_error"]
    detail: ShortText = ""
    cleared: bool = False


Event = Annotated[
    SessionOpened | StoodUp | Smiled | Evaluated | SessionSummary | Away | SignWhilePresent | Fault,
    Field(discriminator="kind"),
]
EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)
EVENT_TYPES: Final = (
    SessionOpened,
    StoodUp,
    Smiled,
    Evaluated,
    SessionSummary,
    Away,
    SignWhilePresent,
    Fault,
)


def parse_event(raw: bytes | str) -> Event:
    """Validate one event payload; raises pydantic.ValidationError."""
    return EVENT_ADAPTER.validate_json(raw)


# --------------------------------------------------------------------------- state etc.


class WindowState(Wire):
    """Retained snapshot of a window, republished on every change."""

    schema_version: Literal[1] = 1
    site: Slug
    window: Slug
    ts_ms: TimestampMs
    present: bool = Field(description="A clerk face is at the window.")
    standing: bool
    in_session: bool
    sign_up: bool
    perception: Literal["camera", "scripted"] = Field(
        description="Where observations come from; 'scripted' in simulations."
    )


class Health(Wire):
    schema_version: Literal[1] = 1
    site: Slug
    window: Slug
    ts_ms: TimestampMs
    uptime_s: Count
    fps: float = Field(ge=0, le=1000, allow_inf_nan=False)
    inference_ms: float = Field(ge=0, le=3_600_000, allow_inf_nan=False)
    cpu_temp_c: float | None = Field(None, ge=-100, le=200, allow_inf_nan=False)
    load1: float | None = Field(None, ge=0, le=10_000, allow_inf_nan=False)
    outbox_depth: Count
    outbox_oldest_age_s: float | None = Field(None, ge=0, le=1e10, allow_inf_nan=False)
    dropped: Count = 0
    suspect_presses: Count = 0
    model_version: ShortText
    config_version: ShortText


class Command(Wire):
    """Server or queue system -> terminal."""

    schema_version: Literal[1] = 1
    cmd_id: uuid.UUID
    action: Literal["call", "finish", "recalibrate", "ping"]
    ticket: ShortText | None = None
    priority: bool = False


class Reply(Wire):
    schema_version: Literal[1] = 1
    cmd_id: uuid.UUID | None
    ok: bool
    error: ShortText | None = None


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every payload's JSON schema, keyed by a readable name (docs and tests use it)."""
    out: dict[str, dict[str, Any]] = {}
    for model in (*EVENT_TYPES, WindowState, Health, Command, Reply):
        out[model.__name__] = model.model_json_schema()
    return out
