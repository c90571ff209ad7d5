"""Chaos checks on the demo stack: ``python -m bench.chaos`` (issue 8, part 3).

Runs the demo's pieces as processes (``bench.chaos.stack``: Mosquitto, ``warmwindow
server``, N simulated windows with the real agent code) and injects, one at a time with
recovery in between: broker restart, network cut of one window (network namespace),
agent SIGKILL, server SIGKILL, disk-full on one window's outbox (own tmpfs). After each
it checks the store against every outbox's ``last_seq`` and times the recovery (fault
cleared -> backlog fully stored); see ``bench.chaos.faults``. Prints the table and
writes it to ``--report`` (docs/chaos-report.md). Namespace and tmpfs need root; without
it those two faults are reported as not run. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.chaos.faults import FAULTS, FaultResult, run_fault
from bench.chaos.stack import RESTART_S, WATCHDOG_S, ChaosStack, NetNs, SmallDisk
from bench.city.verify import Verdict, verify

REPO = Path(__file__).resolve().parents[2]
DEFAULT_HOLD = {
    "broker_restart": 5.0,
    "network_cut": 20.0,
    "agent_sigkill": 3.0,
    "server_sigkill": 10.0,
    "disk_full": 20.0,
}


def warm_up(stack: ChaosStack, timeout: float = 90) -> None:
    """Every window has made events and the store holds them: the stack works."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gen = stack.generated()
        if len(gen) == len(stack.windows) and all(v > 0 for v in gen.values()):
            took, _, _ = stack.wait_stored(gen, max(1.0, deadline - time.monotonic()))
            if took is not None:
                return
        time.sleep(0.5)
    raise RuntimeError("stack did not start delivering events (see the logs in the workdir)")


def finish(stack: ChaosStack, timeout: float = 60) -> tuple[Verdict, float | None]:
    """Stop the windows cleanly (they flush), then compare every outbox with the store."""
    stack.stop_windows()
    gen = stack.generated()
    took, _, _ = stack.wait_stored(gen, timeout)
    return verify(stack.store, gen), took


def render(
    results: list[FaultResult], final: Verdict, refused: int, args: argparse.Namespace
) -> str:
    def secs(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "not within the limit"

    lines = [
        "# Chaos report: the demo stack under five faults",
        "",
        "Measured by `bench/chaos` (issue 8, part 3). Command:",
        "",
        "```sh",
        f"python -m bench.chaos --windows {args.windows} --pace {args.pace:g}",
        "```",
        "",
        f"Run on {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPU cores shared with "
        "other work. The stack: a private Mosquitto (persistence on), `warmwindow server` "
        f"(ingest + API, SQLite, persistent MQTT session) as a process, and {args.windows} "
        "demo windows (`agent.sim.SimulatedWindow`: the real `WindowAgent`, rules, outbox, "
        f"transport; MockFactory pins; scripted clerk; scenario at pace {args.pace:g}) as "
        "processes. A supervisor plays systemd for the windows as deployed "
        f"(`Restart=always`, `RestartSec={RESTART_S:g}`, `WatchdogSec={WATCHDOG_S:g}` kicked "
        "only by a healthy rule loop).",
        "",
        "How each fault is made:",
        "",
    ]
    for r in results:
        lines.append(f"- **{r.name}** ({r.hold_s:g} s): {r.how}.")
    lines += [
        "",
        "Per fault: *made during* = events the outboxes stored between injecting and "
        "clearing it; *lost* = sequence numbers (up to each outbox's last_seq at the moment "
        "of clearing) the store did not hold by the end of the wait, plus drafts the outbox "
        "refused; *duplicates* = stored rows beyond one per (window, seq); *recover* = "
        "fault cleared -> all of that backlog stored; *resumed* = the faulted window making "
        "new events again.",
        "",
        "| fault | held (s) | made during | lost | duplicates | recover (s) | resumed (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.name} | - | - | not run: {r.skipped} | - | - | - |")
            continue
        lines.append(
            f"| {r.name} | {r.hold_s:g} | {r.made_during} | **{r.lost}**"
            f"{f' ({r.refused} refused by the outbox)' if r.refused else ''} | "
            f"**{r.duplicates}** | {secs(r.recover_s)} | "
            f"{secs(r.resumed_s) if r.resumed_s is not None else '-'} |"
        )
    lines += [
        "",
        f"Whole run, every outbox against the store after the windows stopped: "
        f"{final.line()} over {final.devices} windows; drafts refused by a full outbox: "
        f"{refused}.",
        "",
    ]
    notes = [(r.name, n) for r in results for n in r.notes]
    if notes:
        lines += ["Notes:", "", *[f"- {name}: {n}" for name, n in notes], ""]
    if final.worst:
        lines += ["Off windows:", "", *[f"- {w}" for w in final.worst], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--pace", type=float, default=0.1, help="demo scenario time scale")
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: SQLite in the workdir)")
    ap.add_argument("--report", type=Path, default=REPO / "docs" / "chaos-report.md")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        ap.error(f"unknown faults: {sorted(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="ww-chaos-"))
    db = args.db or f"sqlite:///{work}/warmwindow.db"
    print(f"workdir {work}", flush=True)
    stack = ChaosStack(
        work,
        db,
        windows=args.windows,
        pace=args.pace,
        netns_window=NetNs.available(),
        small_disk_kib=16384 if SmallDisk.available() else None,
    )
    status = 1
    try:
        stack.start()
        warm_up(stack)
        print(f"stack up: {args.windows} windows delivering", flush=True)
        results = []
        for name in faults:
            r = run_fault(stack, name, DEFAULT_HOLD[name])
            results.append(r)
            print(
                f"{name:15s} lost {r.lost} duplicates {r.duplicates} "
                f"recover {r.recover_s} s resumed {r.resumed_s} s {r.skipped or ''}",
                flush=True,
            )
            time.sleep(3)
        refused = stack.refused()
        final, _ = finish(stack)
        report = render(results, final, refused, args)
        print(report)
        if not args.no_report:
            args.report.write_text(report + "\n", encoding="utf-8")
            print(f"wrote {args.report}")
        status = 0 if final.ok and all(r.ok or r.skipped for r in results) else 2
    finally:
        stack.close()
        if status == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} for its logs")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
