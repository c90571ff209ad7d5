"""Which pushes of window settings apply to a window, and in what order (pure).

A push belongs to a scope: the city (``all``), a district (``district:<name>``), a
centre (``site:<slug>``) or one window (``window:<site>/<window>``). A window's settings
are the layers of every push not withdrawn whose scope reaches it, broadest first and,
within one scope, oldest first: the narrowest and latest push wins a field
(``agent/overrides.py`` applies them in that order on the terminal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from agent.overrides import Layer, Overrides

_SCOPE: Final = re.compile(
    r"^(all|district:[^\x00-\x1f]{1,80}|site:[a-z0-9][a-z0-9-]{0,31}"
    r"|window:[a-z0-9][a-z0-9-]{0,31}/[a-z0-9][a-z0-9-]{0,31})$"
)
_RANK: Final = {"all": 0, "district": 1, "site": 2, "window": 3}


def valid_scope(scope: str) -> bool:
    return bool(_SCOPE.match(scope))


def rank(scope: str) -> int:
    return _RANK[scope.split(":", 1)[0]]


def reaches(scope: str, site: str, window: str, district: str) -> bool:
    """Whether a push for ``scope`` applies to ``site``/``window`` (of ``district``)."""
    if scope == "all":
        return True
    kind, _, name = scope.partition(":")
    if kind == "district":
        return name == district
    if kind == "site":
        return name == site
    return name == f"{site}/{window}"


def site_of(scope: str) -> str | None:
    """The one centre a site or window scope names; None for the city or a district."""
    kind, _, name = scope.partition(":")
    if kind == "site":
        return name
    if kind == "window":
        return name.split("/", 1)[0]
    return None


def compose(
    pushes: Iterable[Mapping[str, Any]], site: str, window: str, district: str
) -> Overrides:
    """The ``Overrides`` document of one window from the push rows (``id``, ``scope``,
    ``fields``, ``note``, ``by``, ``at_ms``, ``withdrawn_ms``)."""
    live = [
        p
        for p in pushes
        if p.get("withdrawn_ms") is None and reaches(p["scope"], site, window, district)
    ]
    live.sort(key=lambda p: (rank(p["scope"]), p["id"]))
    return Overrides(
        site=site,
        window=window,
        layers=tuple(
            Layer(
                scope=p["scope"],
                push_id=p["id"],
                by=p["by"][:96],
                at_ms=p["at_ms"],
                note=p["note"][:280],
                fields=dict(p["fields"]),
            )
            for p in live
        ),
    )
