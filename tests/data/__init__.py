"""Recorded inputs the tests replay (no device needed)."""
