"""The inputs the service-session rules accept, besides perception observations.

These are plain, frozen values with no clock inside: whoever produces one (a gpiozero
callback, the MQTT ``cmd`` handler, the app's tick loop, a test script) pairs it with
the device time in ms, e.g. ``(t_ms, Call(source="bell"))``. The hardware layer
imports this module to speak the rules' vocabulary; it imports nothing else of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from agent.observation import Observation
from agent.protocol import Command, PriorityCategory, Rating


@dataclass(frozen=True, slots=True)
class Call:
    """A number was called: the caller bell / call-next key, or the queue system (W-CALL).

    A queue call may bring its own details (contract version 2): the queue system's
    ``call_id``, the service matter, the H-PRIORITY category and the case number; the
    session carries them into its events. A ``priority_category`` implies ``priority``.
    """

    source: Literal["bell", "queue"] = "bell"
    ticket: str | None = None
    priority: bool = False
    call_id: str | None = None
    matter_code: str | None = None
    matter_name: str | None = None
    priority_category: PriorityCategory | None = None
    case_number: str | None = None

    def __post_init__(self) -> None:
        if self.priority_category is not None and not self.priority:
            object.__setattr__(self, "priority", True)  # frozen: set once, here


@dataclass(frozen=True, slots=True)
class Presence:
    """A front desk's presence sensor (F-RECEIVE): it began (``here=True``) or stopped
    (``here=False``) seeing a citizen at the desk. Only a front desk's rules use it."""

    here: bool


@dataclass(frozen=True, slots=True)
class Finish:
    """The clerk pressed the optional finish-service key."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A citizen pressed a button of the evaluation panel (W-EVALUATE)."""

    rating: Rating


@dataclass(frozen=True, slots=True)
class Sign:
    """The please-wait sign (请稍候) was put up (``up=True``) or taken down."""

    up: bool


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes; lets timeouts fire when nothing else happens.

    ``in_hours`` carries the centre's opening-hours state, computed by the caller from
    its clock and ``SiteConfig.hours``; None leaves the current state unchanged.
    """

    in_hours: bool | None = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The agent is stopping: close the open session and flush what can be flushed."""


#: Anything ``ServiceRules.feed`` accepts.
RuleInput: TypeAlias = Observation | Call | Presence | Finish | Evaluation | Sign | Tick | Shutdown


def from_command(cmd: Command) -> RuleInput | None:
    """The rule input a queue-system ``cmd`` carries, or None for non-rule actions.

    A centre may wire its queue-calling system instead of (or besides) the bell; its
    calls arrive over MQTT and open sessions exactly like a press, with the ticket and
    (version 2 commands) the call's own fields.
    """
    if cmd.action == "call":
        return Call(
            source="queue",
            ticket=cmd.ticket,
            priority=cmd.priority,
            call_id=cmd.call_id,
            matter_code=cmd.matter_code,
            matter_name=cmd.matter_name,
            priority_category=cmd.priority_category,
            case_number=cmd.case_number,
        )
    if cmd.action == "finish":
        return Finish()
    return None


__all__ = [
    "Call",
    "Evaluation",
    "Finish",
    "Presence",
    "RuleInput",
    "Shutdown",
    "Sign",
    "Tick",
    "from_command",
]
