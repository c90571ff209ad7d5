"""Checks of the benchmarks' own arithmetic (the runs themselves are ``python -m bench.*``)."""
