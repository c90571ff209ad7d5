"""The faults, one at a time, each followed by a check that nothing was lost.

For every fault: note each outbox's ``last_seq``; inject; hold it for ``hold_s`` (the
supervisor keeps playing systemd meanwhile); clear it; note every ``last_seq`` again, at
the moment of clearing; then time how long until the store holds every one of those
sequence numbers ("time to recover": fault cleared -> backlog fully stored). Lost =
seqs up to that point still missing when the wait ends, plus drafts the outbox refused
(they never got a seq). Duplicates = stored rows beyond one per (window, seq).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from bench.chaos.stack import SITE_SLUG, ChaosStack

#: Faults in the order they run, with what each one does to the stack.
FAULTS: Final = ("broker_restart", "network_cut", "agent_sigkill", "server_sigkill", "disk_full")

HOW: Final = {
    "broker_restart": "Mosquitto stopped (SIGTERM, persistence saved) and started again after "
    "the hold; every window and the server reconnect",
    "network_cut": "the veth link of window w01's network namespace set down: the TCP "
    "connection goes silent both ways (no RST); MQTT keepalive 5 s finds it",
    "agent_sigkill": "window w02's agent process SIGKILLed; restarted on the same outbox file "
    "after the hold",
    "server_sigkill": "the server process (`warmwindow server`, ingest + API) SIGKILLed; "
    "restarted after the hold; the broker keeps its persistent session",
    "disk_full": "w01's state directory is its own tmpfs; a filler file takes every free "
    "block while w01 is cut off (so the outbox has to grow), then both are undone",
}


@dataclass
class FaultResult:
    name: str
    how: str
    hold_s: float
    made_during: int = 0  #: events stored in outboxes between inject and clear
    lost: int = 0
    duplicates: int = 0
    refused: int = 0  #: drafts the outbox refused (counted in lost)
    recover_s: float | None = None
    resumed_s: float | None = None  #: target window producing events again
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.lost == 0 and self.duplicates == 0


def _hold(stack: ChaosStack, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        stack.supervise()
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))


def run_fault(
    stack: ChaosStack, name: str, hold_s: float, recover_timeout_s: float = 120
) -> FaultResult:
    res = FaultResult(name=name, how=HOW[name], hold_s=hold_s)
    target = None
    inject: Callable[[], None]
    clear: Callable[[], None]
    if name == "broker_restart":
        inject, clear = stack.broker.stop, stack.broker.start
    elif name == "network_cut":
        if stack.netns is None:
            res.skipped = "needs root for ip netns"
            return res
        target = stack.windows[0]
        inject, clear = stack.netns.cut, stack.netns.mend
    elif name == "agent_sigkill":
        target = stack.windows[1 % len(stack.windows)]
        w = target
        inject, clear = (lambda: stack.kill_window(w)), (lambda: stack.start_window(w))
    elif name == "server_sigkill":
        inject, clear = stack.kill_server, stack.start_server
    elif name == "disk_full":
        disk, ns = stack.disk, stack.netns
        if disk is None or ns is None:
            res.skipped = "needs root for a tmpfs and ip netns"
            return res
        target = stack.windows[0]

        def inject() -> None:
            res.notes.append(f"filler wrote {disk.fill() // 1024} KiB")
            ns.cut()

        def clear() -> None:
            disk.clear()
            ns.mend()

    else:
        raise ValueError(name)

    before = stack.generated()
    refused0 = stack.refused()
    inject()
    _hold(stack, hold_s)
    clear()
    upto = stack.generated()
    res.made_during = sum(upto.values()) - sum(before.values())
    t_clear = time.monotonic()
    recover, missing, dup = stack.wait_stored(upto, recover_timeout_s, tick=stack.supervise)
    res.recover_s = recover
    if target is not None:
        dev = (SITE_SLUG, target.slug)
        while time.monotonic() - t_clear < recover_timeout_s + 60:
            if stack.generated().get(dev, 0) > upto.get(dev, 0):
                res.resumed_s = time.monotonic() - t_clear
                break
            stack.supervise()
            time.sleep(0.25)
        res.notes += target.restarts
        target.restarts = []
    res.refused = stack.refused() - refused0
    res.lost = missing + res.refused
    res.duplicates = dup
    return res
