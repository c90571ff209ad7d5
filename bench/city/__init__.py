"""City-scale simulation (issue 8, part 2): ``python -m bench.city``; see ``__main__``."""
