"""Perception benchmark: ``python -m bench.vision`` (see ``__main__``)."""
