"""The parts of ``bench.city --cluster`` that need no cluster: the report section it
rewrites (the rest of docs/city-run.md is kept) and its fault plan (one fault at a time,
each undone before the next, so every phase's latency is read apart)."""

from __future__ import annotations

from pathlib import Path

from bench.city.__main__ import (
    CLUSTER_BEGIN,
    CLUSTER_END,
    MOSQUITTO_BEGIN,
    MOSQUITTO_END,
    cluster_faults,
    mosquitto_faults,
    write_section,
)


def test_the_section_is_appended_then_replaced_and_the_rest_is_kept(tmp_path: Path) -> None:
    report = tmp_path / "city-run.md"
    report.write_text("# City runs\n\n10,000 windows: 0 lost\n", encoding="utf-8")
    write_section(report, "first run")
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# City runs\n\n10,000 windows: 0 lost\n")
    assert f"{CLUSTER_BEGIN}\n\nfirst run\n{CLUSTER_END}" in text

    report.write_text(text + "\n## Later section\n", encoding="utf-8")
    write_section(report, "second run")
    text = report.read_text(encoding="utf-8")
    assert "first run" not in text and "second run" in text
    assert text.count(CLUSTER_BEGIN) == text.count(CLUSTER_END) == 1
    assert text.startswith("# City runs\n\n10,000 windows: 0 lost\n")
    assert text.endswith("\n## Later section\n")


def test_a_missing_report_gets_the_section_alone(tmp_path: Path) -> None:
    report = tmp_path / "new" / "city.md"
    write_section(report, "only run")
    assert report.read_text(encoding="utf-8") == f"{CLUSTER_BEGIN}\n\nonly run\n{CLUSTER_END}\n"


def test_cluster_faults_come_one_at_a_time_and_each_is_undone() -> None:
    plan = sorted(cluster_faults("all"))
    undo = {"node-kill": "node-restart", "kill": "revive", "partition": "heal"}
    assert [w for _, w in plan] == [
        "node-kill", "node-restart", "kill", "revive", "partition", "heal",
    ]  # fmt: skip
    for (_, fault), (_, next_one) in zip(plan[::2], plan[1::2], strict=True):
        assert undo[fault] == next_one
    assert all(0 < at < 1 for at, _ in plan)
    assert {w for _, w in cluster_faults("replica")} == {"kill", "revive"}
    assert {w for _, w in cluster_faults("none")} == set()
    assert {w for _, w in mosquitto_faults("all")} == {"kill", "revive", "broker"}


def test_the_mosquitto_and_cluster_runs_keep_each_others_sections(tmp_path: Path) -> None:
    report = tmp_path / "city-run.md"
    report.write_text("# City runs\n\nhand-written figures\n", encoding="utf-8")
    write_section(report, "cluster run")
    write_section(report, "mosquitto run 1", MOSQUITTO_BEGIN, MOSQUITTO_END)
    write_section(report, "mosquitto run 2", MOSQUITTO_BEGIN, MOSQUITTO_END)
    text = report.read_text(encoding="utf-8")
    assert "hand-written figures" in text and "cluster run" in text
    assert "mosquitto run 2" in text and "mosquitto run 1" not in text
    assert text.count(MOSQUITTO_BEGIN) == text.count(CLUSTER_BEGIN) == 1
