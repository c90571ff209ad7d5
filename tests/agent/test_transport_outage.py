"""No event is lost: a broker outage mid-stream, and the agent SIGKILLed mid-stream.

Both use a real Mosquitto and a subscriber that plays the aggregator (persistent session,
QoS 1, de-duplication by event_id). The outage lasts 0.8 s here, with the backoff scaled
down to match (what is tested is the order of things: in flight, offline, buffered,
reconnected, replayed); ``WW_OUTAGE_S=30`` runs the delivery issue's 30 s outage with a
terminal's 1 s backoff cap, and ``python -m bench.chaos`` runs outages at fleet scale.

Run as a module, this file is the crash test's agent process:
``python -m tests.agent.test_transport_outage OUTBOX HOST PORT TOTAL``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

from agent.config import BrokerConfig
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.protocol import OFFLINE, ONLINE, Channel
from agent.transport import LinkState, Transport
from tests.agent import CuttableLink, Subscriber, draft
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SITE = "qingpu"
OUTAGE_S = float(os.environ.get("WW_OUTAGE_S", "0.8"))
#: Reconnect backoff cap: 1 s for a long outage, a tenth of a short one.
BACKOFF_MAX_S = min(1.0, OUTAGE_S / 10)


def assert_complete_and_ordered(
    copies: list[dict[str, Any]], unique: list[dict[str, Any]], total: int
) -> None:
    ids_by_seq: dict[int, set[str]] = defaultdict(set)
    for ev in copies:
        ids_by_seq[ev["seq"]].add(ev["event_id"])
    reused = {s: ids for s, ids in ids_by_seq.items() if len(ids) > 1}
    assert not reused, f"seqs reused by different events: {sorted(reused)[:10]}"
    seqs = [ev["seq"] for ev in unique]
    missing = sorted(set(range(1, total + 1)) - set(seqs))
    assert not missing, (
        f"{len(missing)} events never arrived: {missing[:5]}..{missing[-5:]}; "
        f"{len(copies)} copies, {len(unique)} unique"
    )
    extra = sorted(set(seqs) - set(range(1, total + 1)))
    assert not extra, f"unexpected extra events: {extra[:10]}"
    assert seqs == sorted(seqs), "events arrived out of seq order after de-duplication"


def test_broker_outage_mid_stream_loses_nothing(broker: MosquittoBroker, tmp_path: Path) -> None:
    total, stop_at, restart_at = 1000, 300, 700
    sub = Subscriber(broker.host, broker.port)
    box = Outbox(tmp_path / "outbox.db", SITE, "w01")
    cfg = BrokerConfig(host=broker.host, port=broker.port, keepalive_s=5)
    link = Transport(
        cfg, SITE, "w01", box, backoff_base_s=BACKOFF_MAX_S / 4, backoff_max_s=BACKOFF_MAX_S
    )
    link.start()
    try:
        wait_until(lambda: link.connected, 10, "connection")
        for i in range(stop_at):
            box.add(draft(i))
            if i % 10 == 0:
                time.sleep(0.005)  # a stream, not one burst
        wait_until(lambda: len(sub.copies) >= 100, 20, "live delivery before the outage")
        broker.stop()  # with rows in flight and more unsent
        stopped = time.monotonic()
        offline_seen = False
        # Keep producing through the whole outage, evenly spread over it.
        for n, i in enumerate(range(stop_at, restart_at)):
            box.add(draft(i))
            offline_seen |= link.link is LinkState.OFFLINE
            pause = stopped + OUTAGE_S * (n + 1) / (restart_at - stop_at) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        assert offline_seen, "the transport never noticed the outage"
        depth_in_outage = box.depth
        broker.start()
        for i in range(restart_at, total):
            box.add(draft(i))
        assert link.flush(60), f"outbox not drained: {link.stats()}"
        stats = link.stats()
        try:
            wait_until(lambda: len(sub.unique()) >= total, 30, "every event at the subscriber")
        except AssertionError:
            assert_complete_and_ordered(sub.copies, sub.unique(), total)  # says what is missing
            raise
    finally:
        link.close()
        box.close()
        sub.close()

    unique = sub.unique()
    assert_complete_and_ordered(sub.copies, unique, total)
    assert depth_in_outage >= restart_at - stop_at
    assert stats.connects >= 2 and stats.acked >= total
    by_seq = {ev["seq"]: ev for ev in unique}
    # Stored while the broker was away: replayed, so marked historical.
    assert all(by_seq[s]["historical"] for s in range(stop_at + 1, restart_at + 1))
    # The first events went out live.
    assert not any(by_seq[s]["historical"] for s in range(1, 101))
    assert len({ev["boot_id"] for ev in unique}) == 1


def _read_until(stream: IO[str], prefix: str, timeout: float) -> list[str]:
    """Lines from the child up to and including the first starting with prefix."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise AssertionError(f"child exited before {prefix!r}; said {lines[-5:]}")
        lines.append(line.strip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"child did not say {prefix!r} in {timeout:.0f} s")


def _spawn(outbox: Path, host: str, port: int, total: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.agent.test_transport_outage",
            str(outbox),
            host,
            str(port),
            str(total),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_agent_sigkilled_mid_stream_loses_nothing(broker: MosquittoBroker, tmp_path: Path) -> None:
    total, kill_after = 1500, 600
    outbox = tmp_path / "outbox.db"
    sub = Subscriber(broker.host, broker.port, (Channel.EVENT, Channel.AVAILABILITY))
    first = _spawn(outbox, broker.host, broker.port, total)
    try:
        assert first.stdout is not None
        _read_until(first.stdout, f"added {kill_after}", 30)
        delivered_at_kill = len(sub.copies)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        # The broker publishes the last will for the dead agent.
        wait_until(
            lambda: (OFFLINE.encode(), False) in sub.messages(Channel.AVAILABILITY),
            10,
            "the last will",
        )
        second = _spawn(outbox, broker.host, broker.port, total)
        assert second.stdout is not None
        said = _read_until(second.stdout, "done", 60)
        assert second.wait(15) == 0
    finally:
        for p in (first, locals().get("second")):
            if isinstance(p, subprocess.Popen) and p.poll() is None:
                p.kill()
                p.wait()
    try:
        wait_until(lambda: len(sub.unique()) >= total, 20, "every event at the subscriber")
    except AssertionError:
        assert_complete_and_ordered(sub.copies, sub.unique(), total)  # says what is missing
        raise
    finally:
        sub.close()

    assert 0 < delivered_at_kill < total, "the kill was not mid-stream"
    unique = sub.unique()
    assert_complete_and_ordered(sub.copies, unique, total)
    boots: dict[str, list[int]] = defaultdict(list)
    for ev in unique:
        boots[ev["boot_id"]].append(ev["seq"])
    assert len(boots) == 2, "expected events from exactly two runs of the agent"
    run1, run2 = sorted(boots.values(), key=min)
    assert max(run1) + 1 == min(run2), "seqs must continue across the restart"
    resumed_from = int(next(s for s in said if s.startswith("start")).split()[-1])
    assert resumed_from == max(run1) >= kill_after
    assert (ONLINE.encode(), False) in sub.messages(Channel.AVAILABILITY)


def test_agent_sigkilled_during_a_network_cut_loses_nothing(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Rows published into a dead link get no PUBACK: they must outlive the agent."""
    total = 1000
    outbox = tmp_path / "outbox.db"
    sub = Subscriber(broker.host, broker.port)
    net = CuttableLink(broker.host, broker.port)
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(_spawn(outbox, net.host, net.port, total))
        out = procs[0].stdout
        assert out is not None
        _read_until(out, "added 300", 30)
        wait_until(lambda: len(sub.copies) >= 100, 10, "live delivery before the cut")
        net.cut()
        _read_until(out, "added 600", 30)  # published into the void meanwhile
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(10)
        net.restore()
        procs.append(_spawn(outbox, net.host, net.port, total))
        out = procs[1].stdout
        assert out is not None
        _read_until(out, "done", 60)
        assert procs[1].wait(15) == 0
        try:
            wait_until(lambda: len(sub.unique()) >= total, 20, "every event at the subscriber")
        except AssertionError:
            assert_complete_and_ordered(sub.copies, sub.unique(), total)
            raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        net.close()
        sub.close()
    assert_complete_and_ordered(sub.copies, sub.unique(), total)


def _agent(argv: list[str]) -> int:
    """The crash test's agent: add events until TOTAL exist, deliver them, exit."""
    path, host, port, total = argv[0], argv[1], int(argv[2]), int(argv[3])
    box = Outbox(path, SITE, "w09")
    cfg = BrokerConfig(host=host, port=port, keepalive_s=5)
    with Transport(cfg, SITE, "w09", box, backoff_max_s=1.0) as link:
        print(f"start {box.last_seq}", flush=True)
        while box.last_seq < total:
            box.add(draft(box.last_seq))
            if box.last_seq % 100 == 0:
                print(f"added {box.last_seq}", flush=True)
                time.sleep(0.01)  # a stream, not one burst
        drained = link.flush(60)
        print("done" if drained else f"stuck {link.stats()}", flush=True)
    box.close()
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(_agent(sys.argv[1:]))
