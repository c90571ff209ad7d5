"""Shared contract: window settings sent over the air, as layers on top of the window file.

A terminal's configuration is its window file (``/etc/warmwindow/site/windows/<w>.toml``,
the installer's, kept by the package on upgrade). What the centre changes for many
windows at once (a rule threshold for a whole district, a frame rate for one hall)
travels as a signed settings bundle (``agent/bundle.py``, kind ``settings``) holding one
file, ``overrides.json``: an ``Overrides`` document, the *whole* set of layers that
applies to that window (city, district, site, window: broadest first, a later layer
wins), so the latest bundle alone says everything and a missed one costs nothing; and,
where the centre enrols clerks for sign-in at the terminal, ``clerks.json``: its clerk
directory (salted digests only), which then replaces the file ``WW_CLERK_DIRECTORY``.

Only the fields named in ``OVERRIDABLE`` may be set this way: the rule thresholds, the
camera's rates and stream size, the label. The wiring (``gpio``), the role, the badge
reader and the broker stay the installer's: a wrong pin or broker sent over the air could
take a terminal off the network with no way to send it the fix.

``apply_overrides`` merges the layers onto the window file and validates the result with
the same pydantic model the window file is checked with (``agent/config.py``), so a
settings bundle is refused on the terminal, naming the field, before anything changes;
``server`` checks the same fields before it pushes (``check_fields``), but the terminal is
the one that knows its window file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from agent.config import CameraConfig, RuleConfig, WindowConfig
from agent.protocol import Slug

#: The file a settings bundle carries.
OVERRIDES_FILE: Final = "overrides.json"
#: The centre's clerk directory (``agent/directory.py``), when the centre enrols clerks:
#: a settings bundle may carry it, so a clerk enrolled today signs in today.
DIRECTORY_FILE: Final = "clerks.json"

#: Dotted paths a settings bundle may set.
OVERRIDABLE: Final[frozenset[str]] = frozenset(
    {"label"}
    | {f"rules.{name}" for name in RuleConfig.model_fields}
    | {f"camera.{name}" for name in CameraConfig.model_fields if name not in ("source", "device")}
)

FieldPath = Annotated[str, Field(pattern=r"^[a-z_]+(\.[a-z_]+)?$", max_length=64)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(_Closed):
    """One push of the centre's, as it applies to this window."""

    scope: Annotated[str, Field(min_length=1, max_length=96)] = Field(
        description="Whose push: 'city', 'district:<name>', 'site:<site>', 'window:<site>/<w>'."
    )
    push_id: int = Field(ge=1, description="The server's id of the push (its record).")
    by: Annotated[str, Field(max_length=96)] = Field(description="Who pushed it.")
    at_ms: int = Field(ge=0, description="When it was pushed, UTC ms.")
    note: Annotated[str, Field(max_length=280)] = ""
    fields: dict[FieldPath, JsonValue] = Field(
        min_length=1, max_length=64, description="Dotted path -> value, e.g. rules.greet_within_s"
    )


class Overrides(_Closed):
    """``overrides.json``: every layer that applies to one window, broadest first."""

    format: Literal[1] = 1
    site: Slug
    window: Slug
    layers: tuple[Layer, ...] = Field((), max_length=32)


class OverrideError(ValueError):
    """The overrides do not fit the window: each problem names its field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


#: Where a field of the effective configuration came from.
Source = str


@dataclass(frozen=True)
class Effective:
    """The configuration a window runs and, per overridden field, which layer set it."""

    window: WindowConfig
    sources: Mapping[str, Source]


def check_fields(fields: Mapping[str, Any]) -> list[str]:
    """Problems with ``fields`` on their own (the server's check before a push): paths
    that may not be set over the air, and values their section's model refuses, checked
    together on top of the defaults. Empty when they look right; the terminal still
    checks them against its own window file."""
    problems = [
        f"{path}: may not be set over the air (allowed: label, rules.*, camera rates and size)"
        for path in fields
        if path not in OVERRIDABLE
    ]
    if "label" in fields and not isinstance(fields["label"], str):
        problems.append("label: must be text")
    for section, model in (("rules", RuleConfig), ("camera", CameraConfig)):
        values = {
            path.split(".", 1)[1]: value
            for path, value in fields.items()
            if path.startswith(f"{section}.") and path in OVERRIDABLE
        }
        if values:
            try:
                model.model_validate(values)
            except ValidationError as exc:
                problems += _problems(exc, prefix=section)
    return problems


def apply_overrides(base: WindowConfig, overrides: Overrides) -> Effective:
    """``base`` with every layer applied in order, validated; ``OverrideError`` names
    each field that does not fit (a path not allowed, a value out of range, a value that
    contradicts another, e.g. a smile threshold above the too-broad one)."""
    if overrides.window != base.window:
        raise OverrideError([f"window: overrides for {overrides.window!r}, not {base.window!r}"])
    doc = base.model_dump(mode="json")
    sources: dict[str, Source] = {}
    problems: list[str] = []
    for layer in overrides.layers:
        for path, value in layer.fields.items():
            if path not in OVERRIDABLE:
                problems.append(f"{path}: may not be set over the air ({layer.scope})")
                continue
            section, _, name = path.partition(".")
            if name:
                doc.setdefault(section, {})[name] = value
            else:
                doc[section] = value
            sources[path] = f"{layer.scope} (push {layer.push_id})"
    if problems:
        raise OverrideError(problems)
    try:
        window = WindowConfig.model_validate(doc)
    except ValidationError as exc:
        raise OverrideError(_problems(exc)) from None
    return Effective(window=window, sources=sources)


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for err in exc.errors(include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        where = ".".join(p for p in (prefix, loc) if p) or "(document)"
        out.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return out
