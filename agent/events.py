"""Event drafts: what the rules produce before the outbox stamps them.

The rules know what happened and when; only the outbox knows the device's next
sequence number. ``Outbox.add(draft)`` turns a draft into a full protocol event
(event id, seq, boot id, site, window) in the same transaction that stores it, so a
crash can neither skip nor reuse a sequence number.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.protocol import Clause, EventHeader


@dataclass(frozen=True)
class Draft:
    kind: type[EventHeader]
    ts_ms: int
    clauses: tuple[Clause, ...] = ()
    session_id: uuid.UUID | None = None
    fields: dict[str, Any] = field(default_factory=dict)
