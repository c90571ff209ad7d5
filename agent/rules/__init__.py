"""Service-session rules: a pure state machine from observations and presses to events.

``ServiceRules`` (engine.py) holds the rules; ``inputs.py`` the values it accepts
besides ``agent.observation.Observation``.
"""

from agent.rules.engine import RuleCounters, RulesState, ServiceRules, Step, run
from agent.rules.inputs import (
    Call,
    Evaluation,
    Finish,
    Presence,
    RuleInput,
    Shutdown,
    Sign,
    Tick,
    from_command,
)

__all__ = [
    "Call",
    "Evaluation",
    "Finish",
    "Presence",
    "RuleCounters",
    "RuleInput",
    "RulesState",
    "ServiceRules",
    "Shutdown",
    "Sign",
    "Step",
    "Tick",
    "from_command",
    "run",
]
