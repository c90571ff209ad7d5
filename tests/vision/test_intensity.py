"""The smile-intensity labels: two independent passes, their agreement, the flag checked."""

from __future__ import annotations

import pytest

from models.intensity.__main__ import PASSES, agreement, cohen_kappa, read_labels, read_sample


def test_cohen_kappa_on_known_tables() -> None:
    assert cohen_kappa("0112", "0112") == 1.0
    # 2x2 table 20/5/10/15 (n 50): p_o 0.7, p_e 0.5 -> 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_both_passes_label_every_crop_of_the_sample() -> None:
    ids = [i for i, _ in read_sample()]
    assert len(ids) == len(set(ids)) == 360
    for name in PASSES:
        labels = read_labels(name)
        assert sorted(labels) == sorted(ids)
        assert set(labels.values()) <= {"0", "1", "2", "x"}
    got = agreement()
    both, kappa = got["labelled_by_both"], got["kappa"]
    assert isinstance(both, int) and isinstance(kappa, float)
    assert both >= 300 and kappa >= 0.6  # recorded: 0.772
