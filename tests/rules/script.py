"""Helpers for rule scenarios: short observation builders and a readable draft form.

Expected events in the tests are written out by hand as ``ev(kind, ts, **fields)``
tuples; ``brief`` turns the engine's drafts into the same shape, after checking that
each one would make a valid protocol event of the newest contract version, the one the
outbox writes (so field names and ranges are real).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from agent.config import RuleConfig
from agent.events import Draft
from agent.observation import Observation
from agent.protocol import CONTRACT
from agent.rules import ServiceRules

#: The thresholds every scenario was computed with (the documented defaults, spelled
#: out so that a change of defaults cannot silently change what the tests mean).
CFG = RuleConfig(
    stand_within_s=5.0,
    greet_within_s=8.0,
    farewell_within_s=5.0,
    see_off_s=3.0,
    away_after_s=60.0,
    sign_present_flag_s=300.0,
    repeat_press_s=3.0,
    session_timeout_s=1800.0,
    presence_hold_s=5.0,
    smile_threshold=0.5,
    too_broad_threshold=0.97,
    no_smile_below=None,
    min_observed_share=0.8,
)

Brief = tuple[str, int, dict[str, Any]]

#: The queue call's own fields of a session no queue call with details opened (a bell,
#: a reception, a version 1 queue call): ``ev("SessionOpened", 0, ..., **NO_CALL)``.
NO_CALL: dict[str, Any] = dict(
    call_id=None, matter_code=None, matter_name=None, priority_category=None, case_number=None
)


def sid(n: int) -> uuid.UUID:
    """The n-th session id handed out by ``ids()``."""
    return uuid.UUID(int=n)


def ids() -> Callable[[], uuid.UUID]:
    counter = itertools.count(1)
    return lambda: sid(next(counter))


def rules(config: RuleConfig = CFG, **kwargs: Any) -> ServiceRules:
    return ServiceRules(config, new_id=ids(), **kwargs)


def seen(t: int, smile: float | None = 0.0, standing: bool = False) -> Observation:
    """The clerk's face is in view."""
    return Observation(t_ms=t, face_present=True, smile=smile, standing=standing)


def gone(t: int) -> Observation:
    """No face in view."""
    return Observation(t_ms=t, face_present=False)


def ev(kind: str, ts: int, **fields: Any) -> Brief:
    return (kind, ts, fields)


def validate(draft: Draft) -> None:
    """Build the full protocol event the outbox would build; raises if a field is wrong."""
    CONTRACT.model_for(draft.kind)(
        event_id=uuid.uuid4(),
        site="test",
        window="w01",
        seq=1,
        boot_id=uuid.uuid4(),
        ts_ms=draft.ts_ms,
        session_id=draft.session_id,
        clauses=draft.clauses,
        **draft.fields,
    )


def brief(drafts: Iterable[Draft]) -> list[Brief]:
    out = []
    for d in drafts:
        validate(d)
        out.append((d.kind.__name__, d.ts_ms, dict(d.fields)))
    return out
