"""The city run at CI size: 40 windows in worker processes, two replicas, both faults.

``bench.city`` as run for docs/city-run.md, shrunk: the same Mosquitto, replicas,
PostgreSQL database, replica SIGKILL and broker restart, and the same per-window check of
every outbox's last_seq against the store. Its report must say 0 lost and 0 duplicated.
The helpers that turn Mosquitto's on-change $SYS samples into figures are checked by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.city.__main__ import held_fraction, main, recovered_at
from tests.conftest import PG_URL


def test_held_fraction_weighs_samples_by_time() -> None:
    samples = [(0.0, 10), (5.0, 3), (7.0, 10), (20.0, 10)]
    assert held_fraction(samples, 1.0, 11.0, 10) == 0.8  # down from 5 s to 7 s
    assert held_fraction(samples, 5.0, 7.0, 10) == 0.0
    assert held_fraction([], 0.0, 10.0, 1) == 0.0


def test_recovered_at_needs_a_dip_first() -> None:
    samples = [(0.0, 10), (5.0, 3), (6.0, 8), (7.0, 10)]
    assert recovered_at(samples, 4.0, 10) == 7.0
    assert recovered_at(samples, 0.0, 10) == 7.0  # the 10 before the dip does not count
    assert recovered_at(samples, 8.0, 10) is None


def test_small_city_day_with_both_faults_loses_nothing(tmp_path: Path) -> None:
    # bench.city makes (and drops) its own database there; no PostgreSQL fails the test.
    report = tmp_path / "city.md"
    status = main(
        [
            "--windows", "40", "--centres", "4", "--workers", "2",
            "--events-per-window", "12", "--minutes", "0.5",
            "--ramp-s", "2", "--poll-s", "0.5", "--reconnect-spread-s", "2",
            "--pg", PG_URL, "--report", str(report),
        ]
    )  # fmt: skip
    text = report.read_text(encoding="utf-8")
    assert status == 0, text
    generated = re.search(r"\| events generated \(sum of outbox last_seq\) \| (\d+) \|", text)
    stored = re.search(r"\| events stored \(rows in PostgreSQL\) \| (\d+) \|", text)
    assert generated and stored, text
    assert int(generated[1]) == int(stored[1]) == 40 * 12
    assert "| lost (seqs missing per window) | **0** |" in text
    assert "| duplicated (rows beyond one per window+seq) | **0** |" in text
    assert "FAULT broker restarted" in text and "FAULT replica 2" in text
