"""Scenario tests of the service-session rules (agent/rules)."""
