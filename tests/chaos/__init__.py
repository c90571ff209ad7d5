"""Chaos checks, small enough for CI (the full run is ``python -m bench.chaos``)."""
