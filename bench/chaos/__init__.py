"""Chaos checks on the demo stack (issue 8, part 3): ``python -m bench.chaos``."""
