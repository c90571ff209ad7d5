"""What the clock causes, as plain values: a time and rows in, alerts out."""

from __future__ import annotations

from server.policy.clock import (
    SILENT_AFTER_MS,
    OpenCase,
    Terminal,
    due,
    overdue_cases,
    silent_terminals,
)

MIN = 60_000
DUE = 1_800_000_000_000


def case(case_id: str = "c1", due_ms: int = DUE, status: str = "open") -> OpenCase:
    return OpenCase(
        case_id, "qingpu", "w03", due_ms, status, clerk_id="c-li", rating="dissatisfied"
    )


def test_an_open_case_past_due_raises_an_alert_stamped_at_its_due_time() -> None:
    assert overdue_cases(DUE, [case()]) == []  # due at this very ms: not yet overdue
    assert overdue_cases(DUE + 1, [case()]) == [
        {
            "alert_id": "overdue-c1",
            "site": "qingpu",
            "window": "w03",
            "kind": "case_overdue",
            "ts_ms": DUE,
            "detail": {
                "case_id": "c1",
                "due_ms": DUE,
                "clerk_id": "c-li",
                "rating": "dissatisfied",
            },
        }
    ]


def test_a_closed_case_never_goes_overdue() -> None:
    assert overdue_cases(DUE + 10 * MIN, [case(status="closed")]) == []


def test_an_online_terminal_unheard_past_the_limit_is_silent() -> None:
    heard = 1_000 * MIN
    t = Terminal("qingpu", "w03", online=True, last_seen_ms=heard)
    assert silent_terminals(heard + SILENT_AFTER_MS, [t]) == []  # exactly the limit: not yet
    [alert] = silent_terminals(heard + SILENT_AFTER_MS + 1, [t])
    assert (alert["kind"], alert["site"], alert["window"]) == ("terminal_silent", "qingpu", "w03")
    assert alert["ts_ms"] == heard + SILENT_AFTER_MS
    assert alert["detail"] == {"last_heard_ms": heard, "silent_after_ms": SILENT_AFTER_MS}


def test_offline_or_never_heard_terminals_are_not_silent() -> None:
    now = 10_000 * MIN
    assert silent_terminals(now, [Terminal("qingpu", "w03", online=False, last_seen_ms=0)]) == []
    assert silent_terminals(now, [Terminal("qingpu", "w03", online=True)]) == []


def test_coming_online_counts_as_being_heard() -> None:
    # back from an outage: its last event is old, its birth message is not
    t = Terminal("qingpu", "w03", online=True, last_seen_ms=0, availability_ms=100 * MIN)
    assert silent_terminals(102 * MIN, [t]) == []
    assert [a["detail"]["last_heard_ms"] for a in silent_terminals(106 * MIN, [t])] == [100 * MIN]


def test_the_limit_is_a_parameter() -> None:
    t = Terminal("qingpu", "w03", online=True, last_seen_ms=0)
    assert silent_terminals(2 * MIN, [t], silent_after_ms=3 * MIN) == []
    assert len(silent_terminals(4 * MIN, [t], silent_after_ms=3 * MIN)) == 1


def test_alerts_depend_on_the_rows_not_on_when_the_sweep_runs() -> None:
    cases = [case("c1"), case("c2", due_ms=DUE + 30 * MIN), case("c3", status="closed")]
    terminals = [
        Terminal("qingpu", "w03", online=True, last_seen_ms=DUE - 20 * MIN),
        Terminal("qingpu", "w04", online=True, last_seen_ms=DUE + 59 * MIN),
    ]
    early, late = due(DUE + 31 * MIN, cases, terminals), due(DUE + 60 * MIN, cases, terminals)
    assert [a["alert_id"] for a in early][:2] == ["overdue-c1", "overdue-c2"]
    assert early == late  # nothing new became due in between; nothing differs
    much_later = due(DUE + 90 * MIN, cases, terminals)
    assert much_later[: len(late)] == late and len(much_later) == len(late) + 1


def test_each_silence_has_its_own_id() -> None:
    def alert_id(site: str, window: str, heard: int) -> str:
        t = Terminal(site, window, online=True, last_seen_ms=heard)
        return silent_terminals(heard + SILENT_AFTER_MS + 1, [t])[0]["alert_id"]

    ids = {
        alert_id("qingpu", "w03", 0),
        alert_id("qingpu", "w03", 10 * MIN),  # it spoke again, then fell silent again
        alert_id("qingpu", "w04", 0),
        alert_id("a-b", "c", 0),  # slugs hold dashes: these two must not collide
        alert_id("a", "b-c", 0),
    }
    assert len(ids) == 5
    assert alert_id("qingpu", "w03", 0) == alert_id("qingpu", "w03", 0)
    longest = alert_id("s" * 32, "w" * 32, 2**62)
    assert len(longest) <= 64  # the alerts table's key


def test_the_policy_reads_no_clock_and_touches_no_database() -> None:
    import ast
    from pathlib import Path

    import server.policy

    forbidden = {
        "sqlalchemy",
        "time",
        "threading",
        "socket",
        "paho",
        "server.store",
        "server.sweep",
    }
    for path in Path(server.policy.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        hits = {m for m in imported for f in forbidden if m == f or m.startswith(f + ".")}
        assert not hits, f"{path.name} imports {sorted(hits)}"
