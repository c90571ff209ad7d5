"""``warmwindow models eval-smile --predictions FILE.csv``: one row per image, the same
reading the accuracy line counts, named so two machines' files can be joined."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

from models import datasets
from models.cli import main
from models.evaluate import PREDICTION_COLUMNS


@pytest.fixture(scope="module")
def picked() -> list[datasets.Sample]:
    root = datasets.data_root()
    if not (root / "smiles-lfw").is_dir():
        pytest.fail(f"face data missing at {root} (set WW_DATA)")
    held = datasets.split("smiles-lfw")[1]
    return [s for s in held if s.label == 1][:12] + [s for s in held if s.label == 0][:12]


def _copy(samples: list[datasets.Sample], folder: Path) -> None:
    for s in samples:
        dst = folder / s.path.parent.name
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, dst / s.path.name)


def test_predictions_file_matches_the_accuracy_line(
    tmp_path: Path, picked: list[datasets.Sample], capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = tmp_path / "set", tmp_path / "pred.csv"
    _copy(picked, data)

    assert main(["eval-smile", "--data", str(data), "--predictions", str(out)]) == 0

    m = re.fullmatch(r"accuracy=(\d\.\d+) n=(\d+) ci95=.*", capsys.readouterr().out.strip())
    assert m, "no accuracy line"
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == PREDICTION_COLUMNS
    assert len(rows) == int(m.group(2)) == len(picked)
    # Paths relative to --data, so the host's and the Pi's files join on them.
    assert {r["image"] for r in rows} == {f"{s.path.parent.name}/{s.path.name}" for s in picked}
    for r in rows:
        assert r["label"] == ("1" if r["image"].startswith("smile/") else "0")
        assert 0.0 <= float(r["p_smile"]) <= 1.0
        assert r["predicted"] == ("1" if float(r["p_smile"]) >= 0.5 else "0")
    correct = sum(r["predicted"] == r["label"] for r in rows)
    assert f"{correct / len(rows):.4f}" == m.group(1)


def test_predictions_refused_with_occluded(tmp_path: Path, picked: list[datasets.Sample]) -> None:
    data = tmp_path / "set"
    _copy(picked[:2], data)
    argv = ["eval-smile", "--data", str(data), "--occluded", "eval"]
    assert main([*argv, "--predictions", str(tmp_path / "p.csv")]) == 2
    assert not (tmp_path / "p.csv").exists()
