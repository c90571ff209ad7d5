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
    ww/v1/<site>/<window>/stored        QoS 0             server -> terminal: seqs it stored
    ww/v1/_server/accepts/<server>      retained, QoS 1   versions an ingest accepts

Versions: the event contract grows only by optional fields (``Contract``): version N of
an event is version N-1 plus fields with a default. Every ingest accepts each version
its ``Contract`` knows and announces them on its ``accepts`` topic; a terminal sends the
highest version it shares with every announcing server, dropping the fields an older
version lacks on the way out. Servers are upgraded first.

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

import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, Union, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

#: The newest event schema version this build speaks (``CONTRACT.newest``).
SCHEMA_VERSION: Final = 3
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
    SETTINGS = "settings"
    CMD = "cmd"
    REPLY = "reply"
    STORED = "stored"


#: (qos, retain) per channel: the fleet conventions both sides rely on.
CHANNEL_QOS: Final[dict[Channel, tuple[int, bool]]] = {
    Channel.AVAILABILITY: (1, True),
    Channel.EVENT: (1, False),
    Channel.STATE: (1, True),
    Channel.HEALTH: (0, False),
    Channel.CONFIG: (1, True),
    Channel.SETTINGS: (1, True),
    Channel.CMD: (1, False),
    Channel.REPLY: (1, False),
    # QoS 0 on purpose: on a clustered engine (NATS) a QoS 1 subscription is a replicated
    # consumer per terminal; a lost confirmation only costs a resend, stored once.
    Channel.STORED: (0, False),
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


# --------------------------------------------------------------------------- versions


class UnsupportedVersion(ValueError):
    """An event claims a ``schema_version`` this side does not know (not malformed: it
    may be valid for a newer server)."""

    def __init__(self, version: int, known: tuple[int, ...]) -> None:
        super().__init__(f"schema_version {version} not among {known}")
        self.version = version
        self.known = known


class NotInVersion(ValueError):
    """An event of a kind the receiving side's version lacks: it cannot be downgraded
    and waits (the terminal keeps it in its outbox) until the server accepts ``needs``."""

    def __init__(self, kind: str, version: int, needs: int, *, field: str | None = None) -> None:
        what = kind if field is None else f"{kind} with {field} set"
        super().__init__(f"{what} needs schema version {needs}; the server accepts {version}")
        self.kind = kind
        self.field = field
        self.version = version
        self.needs = needs


#: Fields added to an event in a new version: ``{kind: {field: (annotation, Field(...))}}``.
Additions = Mapping[str, Mapping[str, tuple[Any, Any]]]


class Contract:
    """The versions of the event contract one side knows, oldest first.

    The one rule of evolution: version N of an event is version N-1 plus optional
    fields (each with a default), under ``schema_version: Literal[N]``; no field is
    removed, renamed or narrowed, no kind added. ``extend`` is the only way to make
    version N, so the rule holds by construction: its models subclass version N-1's,
    so code reading an event (the store, the rules) reads every version alike. A change
    the rule does not allow needs a new topic root (``ww/v2``).

    ``parse_event`` dispatches on ``schema_version`` and raises ``UnsupportedVersion``
    for an integer version it does not know; ``downgrade`` turns an event's JSON object
    into an older version's by dropping the fields that version lacks.

    Example::

        v2 = CONTRACT.extend({"smiled": {"note": (ShortText | None, Field(None))}})
        v2.versions                      # (1, 2)
        v2.downgrade(smiled_v2_dict, 1)  # the same event without "note", version 1
    """

    __slots__ = ("_adapters", "_fields", "_held", "_models", "versions")

    def __init__(self, event_types: Iterable[type[EventHeader]]) -> None:
        models = {_kind_of(m): m for m in event_types}
        self._models: tuple[dict[str, type[EventHeader]], ...] = (models,)
        self.versions: tuple[int, ...] = (_version_of(next(iter(models.values()))),)
        self._fields: dict[int, dict[str, frozenset[str]]] = {}
        #: Per version: the fields it added that an older version must not lose (see
        #: ``extend(held_if_set=...)``), by kind.
        self._held: dict[int, dict[str, frozenset[str]]] = {}
        self._adapters: tuple[TypeAdapter[Any], TypeAdapter[Any]] | None = None
        self._index()

    def _index(self) -> None:
        self._fields = {
            v: {k: frozenset(m.model_fields) for k, m in ms.items()}
            for v, ms in zip(self.versions, self._models, strict=True)
        }
        unions: list[Any] = [
            Annotated[Union[tuple(ms.values())], Field(discriminator="kind")]  # noqa: UP007
            for ms in self._models
        ]
        # One version: the plain kind union. Several: nested, dispatched on
        # schema_version first (a string discriminator: as fast as the plain union).
        newest: Any = (
            unions[0]
            if len(unions) == 1
            else Annotated[Union[tuple(unions)], Field(discriminator="schema_version")]  # noqa: UP007
        )
        self._adapters = (TypeAdapter(newest), TypeAdapter(unions[0]))

    @property
    def base(self) -> int:
        """The oldest version: what a terminal sends before it knows better."""
        return self.versions[0]

    @property
    def newest(self) -> int:
        return self.versions[-1]

    def event_types(self, version: int) -> tuple[type[EventHeader], ...]:
        return tuple(self._models[self.versions.index(version)].values())

    def model_for(self, kind: type[EventHeader] | str) -> type[EventHeader]:
        """The newest model of an event kind (given by name or by any version's model):
        what a terminal builds its events with."""
        if isinstance(kind, str):
            name = kind
        elif "kind" in kind.model_fields:
            name = _kind_of(kind)
        else:
            raise TypeError(f"{kind!r} is not an event kind")
        for models in reversed(self._models):
            if name in models:
                return models[name]
        raise TypeError(f"{name!r} is not an event kind of this contract")

    def optional_unset(self, event: EventHeader) -> set[str]:
        """The fields later versions added to ``event``'s kind that it leaves None: left
        out of its JSON (their default), so an event that uses none of them costs no more
        bytes than its version 1 form."""
        base = self._fields[self.base].get(_kind_of(type(event)))
        if base is None:  # a kind new in a later version: everything is its own
            return set()
        return {f for f in type(event).model_fields if f not in base and getattr(event, f) is None}

    def since(self, kind: str) -> int:
        """The first version that has ``kind``."""
        for version, models in zip(self.versions, self._models, strict=True):
            if kind in models:
                return version
        raise TypeError(f"{kind!r} is not an event kind of this contract")

    def extend(
        self,
        additions: Additions,
        new_kinds: Iterable[type[EventHeader]] = (),
        *,
        held_if_set: Mapping[str, Iterable[str]] | None = None,
    ) -> Contract:
        """A new contract: these versions plus the next, which adds optional fields to
        the kinds named (the other kinds only change ``schema_version``) and may add new
        kinds (each declaring ``schema_version: Literal[<the new version>]``). Raises
        ValueError when an addition breaks the rule.

        ``held_if_set`` names added fields that change what the older fields of the same
        event mean (``not_observed`` turns a False from "did not" into "could not be
        seen"): an event that sets one is not downgraded to a version without it,
        since the older server would read the older fields alone and get it wrong; it
        raises ``NotInVersion`` and waits for a server that reads the field."""
        version = self.newest + 1
        held = {k: frozenset(v) for k, v in (held_if_set or {}).items()}
        for kind, names in held.items():
            stray = names - set(additions.get(kind, {}))
            if stray:
                raise ValueError(f"{kind}: held fields must be added here: {sorted(stray)}")
        previous = self._models[-1]
        unknown = set(additions) - set(previous)
        if unknown:
            raise ValueError(f"no such event kinds: {sorted(unknown)}")
        added_kinds = {_kind_of(m): m for m in new_kinds}
        for name, model in added_kinds.items():
            if name in previous:
                raise ValueError(f"{name}: the kind exists already")
            if _version_of(model) != version:
                raise ValueError(f"{name}: a new kind of version {version} must say so")
        models: dict[str, type[EventHeader]] = {}
        for kind, base in previous.items():
            added = dict(additions.get(kind, {}))
            clash = set(added) & set(base.model_fields)
            if clash:
                raise ValueError(f"{kind}: fields exist already: {sorted(clash)}")
            doc = f"Wire schema version {version}."
            fields: dict[str, Any] = {
                "schema_version": (Literal[version], Field(version, description=doc)),
                **added,
            }
            model = cast(
                "type[EventHeader]",
                create_model(base.__name__, __base__=base, __module__=base.__module__, **fields),
            )
            required = [f for f in added if model.model_fields[f].is_required()]
            if required:
                raise ValueError(f"{kind}: added fields need a default: {required}")
            models[kind] = model
        models.update(added_kinds)
        out = object.__new__(Contract)
        out._models = (*self._models, models)
        out.versions = (*self.versions, version)
        out._held = {**self._held, version: held}
        out._index()
        return out

    def parse_event(self, raw: bytes | str) -> Event:
        """Validate one event payload of any version known here.

        Raises ``UnsupportedVersion`` for an integer ``schema_version`` not known here,
        ``pydantic.ValidationError`` for anything else that does not validate."""
        assert self._adapters is not None
        try:
            event: Event = self._adapters[0].validate_json(raw)
        except ValidationError:
            claimed = _claimed_version(raw)  # the failure path only: the hot one parses once
            if claimed is None and len(self.versions) > 1:
                # No schema_version: version 1 said it defaults, so it is the base version.
                return self._adapters[1].validate_json(raw)
            if claimed is not None and claimed not in self.versions:
                raise UnsupportedVersion(claimed, self.versions) from None
            raise
        return event

    def common(self, accepted: Iterable[int]) -> int:
        """The highest version known here and in ``accepted``; the base version when none."""
        shared = set(self.versions).intersection(accepted)
        return max(shared) if shared else self.base

    def downgrade(self, data: dict[str, Any], version: int) -> dict[str, Any]:
        """An event's JSON object (a ``model_dump(mode="json")``) as ``version`` has it:
        the fields that version lacks are dropped, whatever their value (the older
        server could not have stored them), and ``schema_version`` says ``version``.
        Raises ``NotInVersion`` for a kind that version does not have at all."""
        kind = data["kind"]
        keep = self._fields[version].get(kind)
        if keep is None:
            raise NotInVersion(kind, version, self.since(kind))
        for later in self.versions[self.versions.index(version) + 1 :]:
            for name in self._held.get(later, {}).get(kind, ()):
                if data.get(name) not in (None, False, [], ()):
                    raise NotInVersion(kind, version, later, field=name)
        out = {k: v for k, v in data.items() if k in keep}
        out["schema_version"] = version
        return out


def _kind_of(model: type[EventHeader]) -> str:
    default = model.model_fields["kind"].default
    assert isinstance(default, str), model
    return default


def _version_of(model: type[EventHeader]) -> int:
    default = model.model_fields["schema_version"].default
    assert isinstance(default, int), model
    return default


def _claimed_version(raw: bytes | str) -> int | None:
    """The integer ``schema_version`` a payload claims, if it is a JSON object with one."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    version = data.get("schema_version") if isinstance(data, dict) else None
    return version if type(version) is int else None


#: Version 1 alone: what every terminal and server since the first release speaks.
BASE_CONTRACT: Final = Contract(EVENT_TYPES)

# --------------------------------------------------------------------------- version 2
# Who served whom, with which ticket (the queue system's call), and the farewell smile.

#: H-PRIORITY: the citizens served first and one-to-one (the queue ticket's category, or
#: the panel's priority key, which gives "other").
PriorityCategory = Literal["elderly", "military", "disabled", "sick", "pregnant", "other"]
PRIORITY_CATEGORIES: Final[tuple[str, ...]] = (
    "elderly",
    "military",
    "disabled",
    "sick",
    "pregnant",
    "other",
)
#: A clerk's staff id (the queue system's and the roster's).
ClerkId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", max_length=32)]
#: The queue system's id of one call (idempotency key of the bridge).
CallId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", max_length=64)]

_CALL: Final[dict[str, tuple[Any, Any]]] = {
    "call_id": (CallId | None, Field(None, description="The queue system's call id.")),
    "matter_code": (ShortText | None, Field(None, description="Service matter (事项) code.")),
    "matter_name": (ShortText | None, Field(None, description="Service matter name.")),
    "priority_category": (
        PriorityCategory | None,
        Field(None, description="H-PRIORITY category; None: not a priority citizen."),
    ),
    "case_number": (
        ShortText | None,
        Field(None, description="Service case number (办件编号), if the business system gave it."),
    ),
}


class ClerkAtTerminal(EventHeader):
    """A clerk signing in or out at the terminal (badge reader or PIN on the panel), or a
    refused attempt. Carries the staff id only: never the badge number or the PIN."""

    # A kind new in version 2 (``Contract.extend(new_kinds=...)``) narrows the header's
    # version literal, as the models ``extend`` makes do.
    schema_version: Literal[2] = Field(2, description="Wire schema version.")  # type: ignore[assignment]
    kind: Literal["clerk_at_terminal"] = "clerk_at_terminal"
    action: Literal["sign_in", "sign_out"]
    method: Literal["badge", "pin"]
    clerk_id: ClerkId | None = Field(None, description="Who; None when refused.")
    refused: Literal["unknown", "other_centre"] | None = Field(
        None, description="Why the terminal refused it (counted, signalled on the panel)."
    )


#: Version 1 and what version 2 adds (who served whom, with which ticket).
V2_CONTRACT: Final = BASE_CONTRACT.extend(
    {
        "session_opened": dict(_CALL),
        "session_summary": {
            "source": (
                Literal["bell", "queue", "presence"] | None,
                Field(None, description="What opened the session."),
            ),
            "ticket": (ShortText | None, Field(None, description="Queue ticket number.")),
            **_CALL,
            "smiled_at_farewell": (
                bool | None,
                Field(None, description="W-FAREWELL: smiled while seeing the citizen off."),
            ),
            "farewell_smile_after_ms": (
                DurationMs | None,
                Field(None, description="Delay of that smile from the end of service."),
            ),
            "greeted_first": (
                bool | None,
                Field(
                    None,
                    description="F-RECEIVE (front desk): stood and smiled within the limits "
                    "of the citizen's approach; None at other windows.",
                ),
            ),
        },
    },
    new_kinds=(ClerkAtTerminal,),
)


# --------------------------------------------------------------------------- version 3
# What could be seen: a verdict is complied, not complied, or not observed.

#: The verdicts of a session that can be "not observed" (the names of its fields).
Verdict = Literal[
    "stood_on_call",
    "smiled_at_greeting",
    "stood_at_farewell",
    "smiled_at_farewell",
    "greeted_first",
]
VERDICTS: Final[tuple[str, ...]] = get_args(Verdict)

_NOT_OBSERVED_DOC = (
    "True: the verdict is 'not observed', not a failure: the camera could not see what "
    "it needed (mouth covered, face turned or lost with the clerk at the seat, view "
    "blocked or badly lit) for enough of the time the rule looked. Its on_time is False."
)

#: The contract of this build: version 1, what version 2 adds, and version 3. A terminal
#: sends a newer version only to servers that announce it (``Accepts``); an event that
#: says "not observed" is never sent to a server that would read it as a failure.
CONTRACT: Final = V2_CONTRACT.extend(
    {
        "stood_up": {"not_observed": (bool | None, Field(None, description=_NOT_OBSERVED_DOC))},
        "smiled": {"not_observed": (bool | None, Field(None, description=_NOT_OBSERVED_DOC))},
        "session_summary": {
            "not_observed": (
                tuple[Verdict, ...] | None,
                Field(
                    None,
                    max_length=len(VERDICTS),
                    description="The verdicts of this session that could not be observed "
                    "(their fields say False, which here means 'not observed', never "
                    "'did not'); None or absent: every verdict was observed.",
                ),
            ),
            "observed_share": (
                Score | None,
                Field(
                    None,
                    description="Share of the session's time in which the clerk's face and "
                    "mouth could be seen (or the seat was seen empty).",
                ),
            ),
        },
    },
    held_if_set={
        "stood_up": ("not_observed",),
        "smiled": ("not_observed",),
        "session_summary": ("not_observed",),
    },
)


def parse_event(raw: bytes | str) -> Event:
    """Validate one event payload of any version of ``CONTRACT``; raises
    ``UnsupportedVersion`` or pydantic.ValidationError."""
    return CONTRACT.parse_event(raw)


# --------------------------------------------------------------------------- accepts

#: Where an ingest announces what it accepts: ``ww/v1/_server/accepts/<server>``, one
#: retained message per ingest (``_server`` cannot be a site slug).
ACCEPTS_ROOT: Final = f"{TOPIC_ROOT}/_server/accepts"
ACCEPTS_SUBSCRIPTION: Final = f"{ACCEPTS_ROOT}/+"
#: (qos, retain) of the announcement.
ACCEPTS_QOS: Final = (1, True)
#: An ingest's MQTT client id, as the last level of its accepts topic.
ServerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", max_length=64)]
_SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def accepts_topic(server: str) -> str:
    """The retained topic of one ingest's announcement; ValueError for an id that
    cannot be a topic level."""
    if not _SERVER_ID.match(server):
        raise ValueError(f"server id {server!r} cannot name an accepts topic")
    return f"{ACCEPTS_ROOT}/{server}"


def parse_accepts_topic(name: str) -> str | None:
    """The server id of an accepts topic; None when ``name`` is not one."""
    prefix, _, server = name.rpartition("/")
    return server if prefix == ACCEPTS_ROOT and _SERVER_ID.match(server) else None


class Accepts(Wire):
    """Ingest -> terminals: the event versions this ingest accepts (retained).

    Version 1 forever: every terminal must read it. A terminal that cannot read one
    takes it as accepting the base version only."""

    schema_version: Literal[1] = 1
    server: ServerId = Field(description="The ingest's client id; also the topic's last level.")
    versions: tuple[Annotated[int, Field(ge=1, le=INT32_MAX)], ...] = Field(
        min_length=1, max_length=16, description="Event schema versions it accepts."
    )
    ts_ms: TimestampMs = Field(description="When the ingest connected, UTC ms.")


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
    commands: Annotated[int, Field(ge=1, le=INT32_MAX)] = Field(
        1,
        description="The newest Command schema version this terminal takes (Command.NEWEST "
        "of its build): send it nothing newer. 1 when absent: terminals from before it said.",
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
    settings_serial: Count | None = Field(
        None, description="Serial of the settings bundle applied (None: the window file only)."
    )
    settings_error: ShortText | None = Field(
        None, description="Why the last settings bundle was refused or rolled back."
    )


class Command(Wire):
    """Server or queue system -> terminal.

    Version 2 adds the queue call's own fields (``ADDED_IN_2``), which the terminal puts
    into the session they open. A terminal refuses fields it does not know, so a version 1
    terminal refuses a version 2 command: send one only to a terminal whose retained
    ``WindowState.commands`` is 2 or more, and ``downgrade(1)`` for the others. A command
    that does not say its ``schema_version`` is the lowest version that holds what it
    carries: 1, unless a version 2 field is set. A ``priority_category`` implies
    ``priority`` (it is set to True).
    """

    #: The newest version this build takes (what its terminals publish as ``commands``).
    NEWEST: ClassVar[int] = 2
    #: The fields version 2 added.
    ADDED_IN_2: ClassVar[tuple[str, ...]] = tuple(_CALL)

    schema_version: Literal[1, 2] = Field(1, description="Command schema version.")
    cmd_id: uuid.UUID
    action: Literal["call", "finish", "recalibrate", "ping"]
    ticket: ShortText | None = Field(None, description="Queue ticket number (call).")
    priority: bool = Field(False, description="Priority citizen (H-PRIORITY) (call).")
    call_id: CallId | None = Field(None, description="The queue system's call id (v2).")
    matter_code: ShortText | None = Field(None, description="Service matter (事项) code (v2).")
    matter_name: ShortText | None = Field(None, description="Service matter name (v2).")
    priority_category: PriorityCategory | None = Field(
        None, description="H-PRIORITY category; implies priority (v2)."
    )
    case_number: ShortText | None = Field(None, description="Service case number (办件编号) (v2).")

    @model_validator(mode="before")
    @classmethod
    def _lowest_version_and_priority(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "schema_version" not in data and any(
            data.get(name) is not None for name in cls.ADDED_IN_2
        ):
            data = {**data, "schema_version": 2}
        if data.get("priority_category") is not None and data.get("priority") is not True:
            data = {**data, "priority": True}
        return data

    @model_validator(mode="after")
    def _fields_of_its_version(self) -> Command:
        if self.schema_version < 2:
            extra = [name for name in self.ADDED_IN_2 if getattr(self, name) is not None]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)}: fields of version 2 in a version 1 command "
                    "(say schema_version 2, or leave it out)"
                )
        return self

    def downgrade(self, version: int) -> Command:
        """This command as a terminal taking ``version`` can read it: the fields that
        version lacks dropped (priority kept), never upgraded. ValueError below 1."""
        if version < 1:
            raise ValueError(f"no Command version {version}")
        if version >= self.schema_version:
            return self
        drop = set(self.ADDED_IN_2)
        data = {k: v for k, v in self.model_dump().items() if k not in drop}
        return Command.model_validate(data | {"schema_version": 1})


class Reply(Wire):
    schema_version: Literal[1] = 1
    cmd_id: uuid.UUID | None
    ok: bool
    error: ShortText | None = None


# --------------------------------------------------------------------------- stored

#: The most ranges one ``Stored`` carries: the privacy walk bounds every list at 16, and
#: one ingest batch of one window is a range or two; more go in several messages
#: (``stored_messages``).
STORED_MAX_RANGES: Final = 16

#: An inclusive range of device sequence numbers, first <= last.
SeqRange = tuple[Seq, Seq]


class Stored(Wire):
    """Server -> one terminal: the events it has committed, by device sequence number.

    The guarantee: every event of this window with a seq in these ranges is committed in
    the store (stored now, or stored before and seen again), so the terminal may delete
    those outbox rows. A seq not in the ranges says nothing (not stored *yet*, or its
    confirmation was lost: QoS 0); the terminal sends it again after a while, and the
    store keeps one row per ``event_id``. Seqs are per terminal and restart never (the
    outbox persists them), so a range cannot confirm an event the terminal still has to
    send under another id."""

    schema_version: Literal[1] = 1
    site: Slug = Field(description="Site slug; must match the topic.")
    window: Slug = Field(description="Window slug; must match the topic.")
    ranges: tuple[SeqRange, ...] = Field(
        min_length=1,
        max_length=STORED_MAX_RANGES,
        description="Inclusive [first, last] seq ranges, each committed in the store.",
    )
    ts_ms: TimestampMs = Field(description="When the server committed them, UTC ms.")

    @model_validator(mode="after")
    def _ordered(self) -> Stored:
        for first, last in self.ranges:
            if first > last:
                raise ValueError(f"range [{first}, {last}]: first after last")
        return self

    def seqs(self) -> Iterable[int]:
        """Every seq the ranges hold (lazily: a range may be long)."""
        for first, last in self.ranges:
            yield from range(first, last + 1)


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Inclusive ranges covering exactly ``seqs`` (any order, repeats allowed), in order:
    ``seq_ranges([3, 1, 2, 7, 7]) == ((1, 3), (7, 7))``."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return tuple(out)


def stored_messages(site: str, window: str, seqs: Iterable[int], ts_ms: int) -> list[Stored]:
    """The ``Stored`` confirmations of one window's committed ``seqs``: as few messages as
    ``STORED_MAX_RANGES`` allows (none for no seqs). What the ingest publishes after a
    commit, on ``topic(site, window, Channel.STORED)``."""
    ranges = seq_ranges(seqs)
    return [
        Stored(site=site, window=window, ranges=ranges[i : i + STORED_MAX_RANGES], ts_ms=ts_ms)
        for i in range(0, len(ranges), STORED_MAX_RANGES)
    ]


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every payload's JSON schema, keyed by a readable name (docs and tests use it)."""
    out: dict[str, dict[str, Any]] = {}
    for model in (*EVENT_TYPES, WindowState, Health, Command, Reply, Accepts, Stored):
        out[model.__name__] = model.model_json_schema()
    for version in CONTRACT.versions[1:]:  # each later version, so the walks cover it
        for later in CONTRACT.event_types(version):
            out[f"{later.__name__} v{version}"] = later.model_json_schema()
    return out
