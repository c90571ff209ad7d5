"""Verdicts against the truth: ``python -m bench.verdicts``."""
