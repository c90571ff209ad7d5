"""City-scale run: ``python -m bench.city [--windows 10000 --centres 300 ...]``.

10,000 simulated windows in ~300 centres (the real Outbox and Transport, scripted
sessions; see ``bench.city.model``) spread over worker processes publish a compressed
working day into one private Mosquitto; two or more ingest replicas (separate
processes, one shared subscription) store it in a fresh PostgreSQL database, dropped at
the end. Midway one replica is SIGKILLed, the broker is restarted, and the replica is
restarted later under its client id (its persistent session holds what it had not
acknowledged). Everything listens and connects on 127.0.0.1 only.

Prints, and writes to its own marked section of ``--report`` (docs/city-run.md, whose
other text is written by hand and kept): events generated vs stored (per
window: outbox last_seq against the store's rows, distinct seqs, max seq, and
``Store.sequence_gaps()``), generated and stored events/s, device-add -> commit and
MQTT-hand-off -> commit latency p50/p99, CPU and memory of the replicas, the broker and
the workers, and the connections Mosquitto reports in ``$SYS/broker/clients/connected``.
It asserts nothing about time; figures are for comparing runs.

Smoke run: ``python -m bench.city --windows 200 --centres 10 --events-per-window 30
--minutes 2 --workers 2 --report /tmp/city.md``.

``--cluster`` plays the day on a 3-node NATS cluster instead (``bench.city.cluster``):
terminals list every node and keep each event until the ingest confirms it stored
(``confirm = "stored"``); the replicas read the JetStream stream (``WW_EVENTS_FROM=
jetstream``). Faults, one at a time: the events stream leader's node SIGKILLed and
restarted, a replica SIGKILLed and restarted, another node partitioned and healed.
Latency is reported per phase between the faults, CPU and peak RSS per node, and the
report replaces only its own section of ``--report`` (between marker comments), so the
Mosquitto figures in docs/city-run.md stay.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
import psutil
from sqlalchemy import text

from agent.localbroker import MosquittoBroker
from bench.city.broker import persistent_mosquitto
from bench.city.cluster import STREAM as STREAM_NAME
from bench.city.cluster import ClusterSide
from bench.city.model import DAY_MINUTES, EVENTS_PER_SESSION, city_layout, city_sites
from bench.city.verify import Verdict, fresh_pg, verify
from bench.city.worker import MAX_WINDOWS_PER_WORKER, raise_nofile
from server.store.db import Store

REPO = Path(__file__).resolve().parents[2]
SHARE_GROUP = "ww-city"
#: p50/p99 of device add -> received and of MQTT hand-off -> received, as two arrays.
LATENCY_PCT = (
    "percentile_disc(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY received_ms - ts_ms),"
    " percentile_disc(ARRAY[0.5, 0.99]) WITHIN GROUP"
    " (ORDER BY received_ms - (payload->>'sent_ms')::bigint)"
)


# --------------------------------------------------------------------------- helpers


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return doc
    except (OSError, ValueError):
        return None


def percentile(hist: Counter[int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = q * (total - 1)
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen > rank:
            return float(value)
    return float(max(hist))


def held_fraction(
    samples: list[tuple[float, int]], start: float, end: float, at_least: int
) -> float:
    """Share of [start, end] during which a sampled count was >= at_least, weighed by
    time (samples may be irregular: Mosquitto publishes $SYS values only on change)."""
    held = 0.0
    value = 0
    t_prev = start
    for t, v in samples:
        if t <= start:
            value = v
            continue
        if t >= end:
            break
        held += (t - t_prev) if value >= at_least else 0.0
        t_prev, value = t, v
    held += (end - t_prev) if value >= at_least else 0.0
    return held / max(end - start, 1e-9)


def recovered_at(samples: list[tuple[float, int]], after: float, at_least: int) -> float | None:
    """When a count that dropped below at_least after ``after`` first got back to it."""
    dipped = False
    for t, v in samples:
        if t <= after:
            continue
        if v < at_least:
            dipped = True
        elif dipped:
            return t
    return None


class SysMonitor:
    """Subscribes to Mosquitto's $SYS connected-clients count; survives broker restarts."""

    def __init__(self, port: int) -> None:
        self.samples: list[tuple[float, int]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="city-sys-monitor")
        self.client.on_connect = lambda c, *_: c.subscribe("$SYS/broker/clients/connected")
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            self.samples.append((time.time(), int(msg.payload)))

    @property
    def latest(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Usage:
    """CPU seconds and peak RSS of a role's processes, sampled (psutil)."""

    cpu_s: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0
    rss_now: dict[int, int] = field(default_factory=dict)

    def sample(self, procs: list[psutil.Process]) -> None:
        rss = 0
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    self.cpu_s[p.pid] = t.user + t.system
                    self.rss_now[p.pid] = p.memory_info().rss
                    rss += self.rss_now[p.pid]
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())


class Replica:
    def __init__(
        self, index: int, url: str, port: int, workdir: Path, cluster: ClusterSide | None = None
    ) -> None:
        self.index = index
        self.url = url
        self.port = port
        self.workdir = workdir
        self.client_id = f"ww-city-ingest-{index}"
        #: On a cluster: the aggregator's WW_* environment (events from the stream).
        self.env = cluster.replica_env(index - 1, self.client_id) if cluster else None
        self.incarnation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stats_files: list[Path] = []
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self.incarnation += 1
        stats = self.workdir / f"replica{self.index}-{self.incarnation}.json"
        self.stats_files.append(stats)
        self._log = (self.workdir / f"replica{self.index}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.city.replica",
                "--url",
                self.url,
                "--port",
                str(self.port),
                "--client-id",
                self.client_id,
                "--share-group",
                SHARE_GROUP,
                "--stats",
                str(stats),
                *(["--from-env"] if self.env else []),
            ],
            cwd=REPO,
            env={**os.environ, **self.env} if self.env else None,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def stats(self) -> dict[str, Any] | None:
        return read_json(self.stats_files[-1]) if self.stats_files else None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------- the run


@dataclass
class Args:
    windows: int
    centres: int
    events_per_window: int
    minutes: float
    workers: int
    replicas: int
    poll_s: float
    ramp_s: float
    keepalive_s: int
    connack_timeout_s: float | None
    reconnect_spread_s: float
    pg: str
    report: Path | None
    faults: str
    seed: int
    keep_db: bool
    cluster: bool = False


def parse_args(argv: list[str] | None = None) -> Args:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--windows", type=int, default=10_000)
    ap.add_argument("--centres", type=int, default=300)
    ap.add_argument(
        "--events-per-window",
        type=int,
        default=120,
        help=f"a day's events per window (rounded to sessions of {EVENTS_PER_SESSION})",
    )
    ap.add_argument(
        "--minutes", type=float, default=24.0, help=f"wall minutes for the {DAY_MINUTES}-min day"
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"agent worker processes (default: windows / {MAX_WINDOWS_PER_WORKER}, rounded up)",
    )
    ap.add_argument("--replicas", type=int, default=2, help="ingest replicas (>= 2)")
    ap.add_argument("--poll-s", type=float, default=2.0, help="Transport poll_s per window")
    ap.add_argument("--ramp-s", type=float, default=None, help="connect ramp (default 6 ms/window)")
    ap.add_argument(
        "--keepalive-s",
        type=int,
        default=None,
        help="MQTT keepalive of every window (default 60; 15 with --cluster, so the "
        "partitioned node's terminals notice within the partition)",
    )
    ap.add_argument(
        "--reconnect-spread-s",
        type=float,
        default=None,
        help="BrokerConfig.reconnect_spread_s of every window (default windows / 100)",
    )
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--report", type=Path, default=REPO / "docs" / "city-run.md")
    ap.add_argument("--no-report", action="store_true", help="print only")
    ap.add_argument(
        "--faults",
        choices=("all", "broker", "replica", "none"),
        default="all",
        help="midway faults: replica SIGKILL + broker restart (all), one of them, or none",
    )
    ap.add_argument(
        "--connack-timeout-s",
        type=float,
        default=None,
        help="broker.connack_timeout_s of every window (default: unset, i.e. 5 s with one "
        "broker, 30 s with --cluster's nodes)",
    )
    ap.add_argument("--keep-db", action="store_true", help="do not drop the database")
    ap.add_argument(
        "--cluster",
        action="store_true",
        help="a 3-node NATS cluster instead of Mosquitto (terminals list every node, "
        "confirm = stored; replicas read the JetStream stream); faults: the events "
        "stream leader's node SIGKILLed and restarted, a replica SIGKILLed and restarted, "
        "another node partitioned and healed; the report replaces only its own section",
    )
    ap.add_argument("--seed", type=int, default=8)
    a = ap.parse_args(argv)
    if a.replicas < 2 and a.faults in ("all", "replica"):
        ap.error("the midway replica kill needs --replicas >= 2")
    return Args(
        windows=a.windows,
        centres=a.centres,
        events_per_window=a.events_per_window,
        minutes=a.minutes,
        workers=max(1, min(a.workers or -(-a.windows // MAX_WINDOWS_PER_WORKER), a.windows)),
        replicas=a.replicas,
        poll_s=a.poll_s,
        ramp_s=a.ramp_s if a.ramp_s is not None else max(5.0, 0.006 * a.windows),
        keepalive_s=a.keepalive_s or (15 if a.cluster else 60),
        connack_timeout_s=a.connack_timeout_s,
        reconnect_spread_s=(
            a.reconnect_spread_s if a.reconnect_spread_s is not None else a.windows / 100
        ),
        pg=a.pg,
        report=None if a.no_report else a.report,
        faults=a.faults,
        keep_db=a.keep_db,
        seed=a.seed,
        cluster=a.cluster,
    )


class CityRun:
    def __init__(self, args: Args, shm: Path, work: Path) -> None:
        self.args = args
        self.shm = shm
        self.work = work
        self.sessions = max(1, round(args.events_per_window / EVENTS_PER_SESSION))
        self.duration_s = args.minutes * 60
        self.layout = city_layout(args.windows, args.centres)
        # One broker side: a private Mosquitto, or (--cluster) a 3-node NATS cluster.
        self.broker: MosquittoBroker | None = None
        self.cluster: ClusterSide | None = None
        if args.cluster:
            self.cluster = ClusterSide(work)
        else:
            self.broker = persistent_mosquitto(
                work / "mosquitto",
                # $SYS every second for the connection count; no cap on connections.
                extra_conf="sys_interval 1\nmax_connections -1\n",
            )
        self.replicas: list[Replica] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_stats: list[Path] = []
        self.usage = {"replicas": Usage(), "broker": Usage(), "workers": Usage()}
        self.events_log: list[str] = []
        self.fault_at: dict[str, float] = {}  # "kill", "broker", "revive" -> time.time()
        #: Cluster run: (time.time(), what happened) at each fault, for the phases.
        self.marks: list[tuple[float, str]] = []
        self.node_victim: int | None = None  # the killed node (the stream leader's)
        self.partitioned: int | None = None
        self.connected: list[tuple[float, int]] = []  # windows connected, by the workers
        self.progress: list[str] = []
        self.monitor: SysMonitor | None = None
        self.final_depth = 0  # outbox rows left when the workers stopped
        self.t_begin = time.time()  # CPU figures span the whole run, ramp and drain too
        self.t_start = 0.0
        self.t_day_end = 0.0
        self.t_all_stored = 0.0

    def note(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {line}", flush=True)
        self.events_log.append(f"{stamp} {line}")

    # ------------------------------------------------------------------ processes

    def start_workers(self, start_at: float) -> None:
        n = self.args.workers
        slices = [self.layout[i::n] for i in range(n)]
        for i, devices in enumerate(slices):
            stats = self.work / f"worker{i}.json"
            spec = {
                "index": i,
                "devices": devices,
                **self.broker_spec(),
                "keepalive_s": self.args.keepalive_s,
                "connack_timeout_s": self.args.connack_timeout_s,
                "outbox_dir": str(self.shm / f"w{i}"),
                "poll_s": self.args.poll_s,
                "backoff_max_s": 30.0,
                "reconnect_spread_s": self.args.reconnect_spread_s,
                "max_inflight": 16,
                "ramp_s": self.args.ramp_s,
                "start_at": start_at,
                "duration_s": self.duration_s,
                "sessions": self.sessions,
                "step_s": min(2.0, self.duration_s / (self.sessions * 12)),
                "seed": self.args.seed * 1000 + i,
                "stats": str(stats),
                "drain_limit_s": self.duration_s * 2 + 900,
            }
            spec_path = self.work / f"worker{i}.spec.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            log = (self.work / f"worker{i}.log").open("ab")
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.city.worker", "--spec", str(spec_path)],
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            self.worker_stats.append(stats)

    def broker_spec(self) -> dict[str, Any]:
        """What the workers' terminals connect to."""
        if self.cluster is not None:
            return self.cluster.worker_broker()
        assert self.broker is not None
        return {"port": self.broker.port}

    def worker_totals(self) -> dict[str, int]:
        tot: Counter[str] = Counter()
        phases: Counter[str] = Counter()
        for p in self.worker_stats:
            doc = read_json(p) or {}
            for k, v in doc.items():
                if isinstance(v, int):
                    tot[k] += v
            phases[str(doc.get("phase", "starting"))] += 1
        out = dict(tot)
        out["in_day"] = phases["day"] + phases["connecting"] + phases["starting"]
        return out

    def sample_usage(self) -> None:
        me = psutil.Process()
        kids = me.children(recursive=True)
        replicas = {r.proc.pid for r in self.replicas if r.proc and r.proc.poll() is None}
        workers = {w.pid for w in self.workers if w.poll() is None}
        self.usage["replicas"].sample([k for k in kids if k.pid in replicas])
        self.usage["workers"].sample([k for k in kids if k.pid in workers])
        if self.cluster is not None:
            self.cluster.sample_usage()
            nodes = {n.pid for n in self.cluster.c.nodes if n.pid is not None}
            self.usage["broker"].sample([k for k in kids if k.pid in nodes])
        else:
            self.usage["broker"].sample([k for k in kids if k.name() == "mosquitto"])

    # ------------------------------------------------------------------ phases

    def run(self, url: str) -> tuple[Verdict, dict[str, Any]]:
        a = self.args
        store = Store(url)
        store.create()
        t = time.monotonic()
        sites = city_sites(self.layout)
        for s in sites:
            store.register_site(s)
        self.note(
            f"registered {len(self.layout)} windows in {len(sites)} centres "
            f"({time.monotonic() - t:.1f} s)"
        )
        if self.cluster is not None:
            self.cluster.start()
            c = self.cluster.c
            for i in range(a.replicas):
                r = Replica(i + 1, url, 0, self.work, cluster=self.cluster)
                r.start()
                self.replicas.append(r)
            # Subscribed on MQTT and pulling from the stream (which the first one creates).
            ok = self._wait(lambda: all((r.stats or {}).get("ready") for r in self.replicas), 90)
            nodes = ", ".join(f"{h}:{p}" for h, p in c.mqtt_nodes())
            self.note(
                f"{len(c.nodes)}-node NATS cluster (MQTT on {nodes}, "
                f"{'network namespaces' if self.cluster.netns else '127.0.0.1, no netns'}); "
                f"{a.replicas} replicas {'ready' if ok else 'NOT all ready'}"
            )
        else:
            assert self.broker is not None
            self.broker.start()
            self.monitor = SysMonitor(self.broker.port)
            for i in range(a.replicas):
                r = Replica(i + 1, url, self.broker.port, self.work)
                r.start()
                self.replicas.append(r)
            self._wait(lambda: all((r.stats or {}).get("connected") for r in self.replicas), 60)
            self.note(f"broker on 127.0.0.1:{self.broker.port}; {a.replicas} replicas connected")

        start_at = time.time() + a.ramp_s + 15
        self.start_workers(start_at)
        self._wait(lambda: self.worker_totals().get("connected", 0) >= a.windows, a.ramp_s + 60)
        self.note(
            f"{self.worker_totals().get('connected', 0)}/{a.windows} windows connected"
            + (f", broker reports {self.monitor.latest} clients" if self.monitor else "")
        )
        while time.time() < start_at:
            time.sleep(0.2)
        self.t_start = time.time()
        self.note(
            f"day starts: {DAY_MINUTES} min in {a.minutes:g} min "
            f"(x{DAY_MINUTES / a.minutes:.0f}), {self.sessions} sessions/window"
        )
        self._play()
        verdict = self._finish(store)
        figures = self._figures(store)
        if self.cluster is not None:
            figures.update(self._cluster_figures(store))
        store.close()
        return verdict, figures

    def _wait(self, cond: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.5)
        return False

    def _play(self) -> None:
        d = self.duration_s
        plan = cluster_faults if self.cluster else mosquitto_faults
        faults = sorted((at * d, what) for at, what in plan(self.args.faults))
        last_print = 0.0
        # Bounded: the day plus three times its length for a slow machine.
        hard_end = self.t_start + 4 * d + 300
        while time.time() < hard_end:
            now = time.time() - self.t_start
            while faults and now >= faults[0][0]:
                self._fault(faults.pop(0)[1])
            self.sample_usage()
            tot = self.worker_totals()
            self.connected.append((time.time(), tot.get("connected", 0)))
            if time.time() - last_print >= 10:
                last_print = time.time()
                sim_min = min(now / d, 1.0) * DAY_MINUTES
                clock = f"{9 + int(sim_min // 60):02d}:{int(sim_min % 60):02d}"
                line = (
                    f"sim {clock}  generated {tot.get('generated', 0)}  "
                    f"waiting in outboxes {tot.get('depth', 0)}  "
                    f"windows connected {tot.get('connected', 0)}  "
                    + (
                        f"unconfirmed {tot.get('unconfirmed', 0)}  node connections "
                        f"{self.cluster.connections[-1][1] if self.cluster.connections else None}"
                        if self.cluster
                        else f"broker clients {self.monitor.latest if self.monitor else None}"
                    )
                )
                print(line, flush=True)
                self.progress.append(f"{time.strftime('%H:%M:%S')} {line}")
            if not faults and tot.get("in_day", 1) == 0:
                break
            time.sleep(1.0)
        self.t_day_end = time.time()
        self.note(f"day over after {self.t_day_end - self.t_start:.0f} s")

    def _fault(self, what: str) -> None:
        self.fault_at[what] = time.time()
        victim = self.replicas[-1]
        if self.cluster is not None and what not in ("kill", "revive"):
            if self._cluster_fault(what):  # a skipped partition starts no phase
                self.marks.append((self.fault_at[what], what))
            return
        if self.cluster is not None:
            self.marks.append((self.fault_at[what], what))
        if what == "kill":
            pid = victim.proc.pid if victim.proc else None
            victim.kill()
            self.note(f"FAULT replica {victim.index} (pid {pid}) SIGKILLed")
        elif what == "broker":
            assert self.broker is not None
            t = time.monotonic()
            self.broker.restart()
            self.note(f"FAULT broker restarted (stop+start {time.monotonic() - t:.1f} s)")
        elif what == "revive":
            victim.start()
            self.note(f"replica {victim.index} restarted under client id {victim.client_id}")

    def _cluster_fault(self, what: str) -> bool:
        """One cluster fault; False when it could not be done (no network namespaces)."""
        assert self.cluster is not None
        cl, c = self.cluster, self.cluster.c
        if what == "node-kill":
            t = time.monotonic()
            leader = cl.stream_leader()
            asked = time.monotonic() - t
            self.node_victim = leader if leader is not None else 0
            c.kill(self.node_victim)
            self.note(
                f"FAULT node {cl.node_label(self.node_victim)} SIGKILLed: "
                + (
                    f"it led {STREAM_NAME} (stream_info, {asked:.1f} s)"
                    if leader is not None
                    else f"nobody named the {STREAM_NAME} leader; killed node 0"
                )
            )
        elif what == "node-restart":
            i = self.node_victim if self.node_victim is not None else 0
            c.start_node(i, wait=False)  # its streams catch up while the day goes on
            self.note(f"node {cl.node_label(i)} restarted (same store, same ports)")
        elif what == "partition":
            if not cl.netns:
                self.note(f"partition SKIPPED: {cl.why_no_netns}")
                return False
            leader = cl.stream_leader()
            others = [i for i in range(len(c.nodes)) if i != self.node_victim]
            # Not the node killed earlier; the stream's leader now, if that is another one.
            i = leader if leader in others else others[0]
            self.partitioned = i
            c.partition(i)
            self.note(
                f"FAULT node {cl.node_label(i)} partitioned (its link down: peers and "
                f"clients cut){'; it led ' + STREAM_NAME if i == leader else ''}"
            )
        elif what == "heal":
            if self.partitioned is None:
                return False
            c.heal(self.partitioned)
            self.note(f"node {cl.node_label(self.partitioned)} healed (link up)")
        return True

    def _finish(self, store: Store) -> Verdict:
        # Everything made must leave the outboxes, then be in PostgreSQL (both bounded).
        drained = self._wait(lambda: self.worker_totals().get("depth", 1) == 0, 900)
        target = self.worker_totals().get("last_seq", 0)
        self.note(f"outboxes {'empty' if drained else 'NOT empty'}; waiting for {target} stored")
        stored = self._wait(lambda: store.event_count() >= target, max(120, self.duration_s))
        self.t_all_stored = time.time()
        self.note(f"store {'complete' if stored else 'INCOMPLETE'}: {store.event_count()} events")
        self.sample_usage()
        for w in self.workers:
            w.terminate()
        generated: dict[tuple[str, str], int] = {}
        for w, p in zip(self.workers, self.worker_stats, strict=True):
            try:
                w.wait(120)
            except subprocess.TimeoutExpired:
                w.kill()
            final = read_json(p.with_suffix(".final.json")) or {}
            for site, window, last, depth, _dropped in final.get("per_window", []):
                generated[(site, window)] = int(last)
                self.final_depth += int(depth)
        missing = len(self.layout) - len(generated)
        if missing:
            self.note(f"{missing} windows did not report their final last_seq")
        for r in self.replicas:
            r.stop()
        return verify(store, generated)

    def _cluster_figures(self, store: Store) -> dict[str, Any]:
        """Latency per phase (events by the time they were made, between fault marks),
        how long until every window was connected again after each node fault, and the
        per-node figures."""
        assert self.cluster is not None
        bounds = [(self.t_start, "before the first fault")]
        bounds += [(t, PHASE_NAMES.get(w, w)) for t, w in sorted(self.marks)]
        phases = []
        with store.engine.connect() as conn:
            for k, (t0, name) in enumerate(bounds):
                t1 = bounds[k + 1][0] if k + 1 < len(bounds) else None
                where = "ts_ms >= :a" + (" AND ts_ms < :b" if t1 is not None else "")
                row = conn.execute(
                    text(f"SELECT {LATENCY_PCT}, count(*) FROM events WHERE {where}"),
                    {"a": int(t0 * 1000), "b": int((t1 or 0) * 1000)},
                ).one()
                phases.append(
                    {
                        "name": name,
                        "from_s": t0 - self.t_start,
                        "to_s": (t1 if t1 is not None else self.t_day_end) - self.t_start,
                        "ts": row[0] or [None, None],
                        "sent": row[1] or [None, None],
                        "rows": row[2],
                    }
                )
        windows = self.args.windows
        recovery = {}
        done = {w for _, w in self.marks}  # a skipped partition is not "none dropped"
        for what in ("node-kill", "partition"):
            at = self.fault_at.get(what) if what in done else None
            if at is not None:
                back = recovered_at(self.connected, at, windows)
                dipped = any(v < windows for t, v in self.connected if t > at)
                recovery[what] = (
                    f"{back - at:.0f} s"
                    if back
                    else ("not within the run" if dipped else "none dropped")
                )
        cl = self.cluster
        return {
            "phases": phases,
            "recovery": recovery,
            "nodes": [
                {
                    "label": cl.node_label(i),
                    "cpu_s": cl.usage[i].total_cpu_s,
                    "incarnations": len(cl.usage[i].cpu_s),
                    "peak_rss": cl.usage[i].peak_rss,
                }
                for i in range(cl.size)
            ],
            "node_connections": cl.max_connections(self.t_start, self.t_day_end),
            "final_depth": self.final_depth,
        }

    def _figures(self, store: Store) -> dict[str, Any]:
        from_ts: Counter[int] = Counter()
        from_sent: Counter[int] = Counter()
        rep_rows = []
        for r in self.replicas:
            for f in r.stats_files:
                doc = read_json(f) or {}
                from_ts.update({int(k): v for k, v in doc.get("from_ts", {}).items()})
                from_sent.update({int(k): v for k, v in doc.get("from_sent", {}).items()})
                rep_rows.append(
                    f"{f.stem}: received {doc.get('received')}, stored {doc.get('stored')}, "
                    f"duplicates ignored {doc.get('duplicates')}, rejected {doc.get('rejected')}"
                )
        with store.engine.connect() as conn:
            pct = conn.execute(
                text(
                    f"SELECT {LATENCY_PCT}, min(received_ms), max(received_ms), count(*)"
                    " FROM events"
                )
            ).one()
            # The steady state: events made before the first fault (none caught by it).
            first_fault_ms = int(min(self.fault_at.values(), default=self.t_day_end) * 1000)
            calm = conn.execute(
                text(f"SELECT {LATENCY_PCT}, count(*) FROM events WHERE ts_ms < :t"),
                {"t": first_fault_ms},
            ).one()
            per_10s = [
                int(n)
                for (n,) in conn.execute(
                    text(
                        "SELECT count(*) FROM events GROUP BY received_ms / 10000"
                        " ORDER BY received_ms / 10000"
                    )
                )
            ]
        wt = self.worker_totals()
        samples = self.monitor.samples if self.monitor else []
        conn_samples = [v for t, v in samples if self.t_start <= t <= self.t_day_end]
        windows = self.args.windows
        restart = self.fault_at.get("broker")
        back = recovered_at(self.connected, restart, windows) if restart else None
        return {
            "calm_ts": calm[0],
            "calm_sent": calm[1],
            "calm_rows": calm[2],
            "held": held_fraction(self.connected, self.t_start, self.t_day_end, windows),
            "reconnected_s": back - restart if back and restart else None,
            "hist_ts": from_ts,
            "hist_sent": from_sent,
            "pg_ts": pct[0],
            "pg_sent": pct[1],
            "received_span_s": (pct[3] - pct[2]) / 1000 if pct[2] else 0.0,
            "rows": pct[4],
            "per_10s": per_10s,
            "replica_rows": rep_rows,
            "workers": wt,
            "connections": conn_samples,
            "all_connections": self.monitor.samples if self.monitor else [],
        }


PHASE_NAMES = {
    "node-kill": "stream leader's node dead",
    "node-restart": "after the node's restart",
    "kill": "replica dead",
    "revive": "after the replica's restart",
    "partition": "node partitioned",
    "heal": "after the heal",
}


def mosquitto_faults(which: str) -> list[tuple[float, str]]:
    """(share of the day, fault) of the Mosquitto run."""
    faults: list[tuple[float, str]] = []
    if which in ("all", "replica"):
        faults += [(0.50, "kill"), (0.70, "revive")]
    if which in ("all", "broker"):
        faults.append((0.55, "broker"))
    return faults


def cluster_faults(which: str) -> list[tuple[float, str]]:
    """(share of the day, fault) of the cluster run: one at a time, each undone before
    the next, so the latency of every phase can be read apart."""
    faults: list[tuple[float, str]] = []
    if which in ("all", "broker"):
        faults += [(0.15, "node-kill"), (0.30, "node-restart")]
        faults += [(0.60, "partition"), (0.80, "heal")]
    if which in ("all", "replica"):
        faults += [(0.40, "kill"), (0.50, "revive")]
    return faults


def fault_text(args: Args) -> str:
    parts = []
    if args.faults in ("all", "replica"):
        parts.append(
            f"at 50% of the day replica {args.replicas} is SIGKILLed and at 70% restarted "
            "under the same client id (its persistent session holds what it had received "
            "but not acknowledged); the other replicas carry on throughout"
        )
    if args.faults in ("all", "broker"):
        parts.append("at 55% the broker is restarted (`MosquittoBroker.restart`, persistence on)")
    return "; ".join(parts) + "." if parts else "none."


def verdict_rows(v: Verdict, wt: dict[str, int]) -> list[str]:
    """The report's first rows, the same for Mosquitto and the cluster: what was lost."""
    return [
        f"| events generated (sum of outbox last_seq) | {v.generated} |",
        f"| events stored (rows in PostgreSQL) | {v.stored_rows} |",
        f"| lost (seqs missing per window) | **{v.lost}** |",
        f"| duplicated (rows beyond one per window+seq) | **{v.duplicates}** |",
        f"| unexpected seqs / `sequence_gaps()` | {v.unexpected} / {v.gaps} |",
        f"| windows checked | {v.devices} |",
        f"| outbox add errors / dropped by cap | {wt.get('add_errors', 0)} / "
        f"{wt.get('dropped', 0)} |",
    ]


def render(args: Args, run: CityRun, v: Verdict, f: dict[str, Any]) -> str:
    day_s = run.t_day_end - run.t_start
    to_stored_s = run.t_all_stored - run.t_start
    wt = f["workers"]
    per10 = sorted(f["per_10s"])
    conns = f["connections"]
    u = run.usage
    mb = 1024 * 1024
    assert run.broker is not None
    # The fault window skews the tail on purpose; the steady-state p99 is over 10-s buckets.
    lines = [
        f"# City run: {args.windows} windows, one compressed working day",
        "",
        "Measured by `bench/city` (issue 8, part 2). Command:",
        "",
        "```sh",
        f"python -m bench.city --windows {args.windows} --centres {args.centres} "
        f"--events-per-window {args.events_per_window} --minutes {args.minutes:g} "
        f"--workers {args.workers} --replicas {args.replicas} --poll-s {args.poll_s:g} "
        f"--ramp-s {args.ramp_s:g} --reconnect-spread-s {args.reconnect_spread_s:g}",
        "```",
        "",
        f"Run on {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPU cores shared with "
        "other work, Mosquitto "
        f"{subprocess.run([run.broker.binary or 'mosquitto', '-h'], capture_output=True, text=True).stdout.splitlines()[0].split()[-1]}"  # noqa: E501
        ", PostgreSQL on 127.0.0.1 (fresh database, dropped afterwards), all traffic on loopback.",
        "",
        "## Setup",
        "",
        f"- {args.windows} windows in {len({s for s, _ in run.layout})} centres, "
        f"{args.workers} worker processes; each window is its own `Outbox` (SQLite WAL on "
        f"/dev/shm) and `Transport` (own paho client and TCP connection, QoS 1, "
        f"`poll_s={args.poll_s:g}`, keepalive {args.keepalive_s} s, "
        f"`reconnect_spread_s={args.reconnect_spread_s:g}`).",
        "- The workers run at nice 10 with a 100 ms GIL switch interval "
        "(`bench/city/worker.py`): real terminals have CPUs of their own.",
        f"- Scripted perception: {run.sessions} served citizens per window per day, 6 events "
        f"each ({run.sessions * EVENTS_PER_SESSION} events/window/day).",
        f"- Compression: the {DAY_MINUTES}-minute day in {args.minutes:g} minutes "
        f"(x{DAY_MINUTES / args.minutes:.0f}).",
        f"- {args.replicas} ingest replicas (`server.ingest.Ingest`, separate processes, "
        f"`$share/{SHARE_GROUP}/...`, manual acks after commit) into one PostgreSQL database.",
        "- Faults: " + fault_text(args),
        "- Agent transport: `agent.transport.Transport` as shipped (a PUBACK 'no matching "
        "subscribers' keeps the row for a resend: the fix finding 1 of an earlier run led to).",
        "",
        "## Result",
        "",
        "| figure | value |",
        "|---|---|",
        *verdict_rows(v, wt),
        f"| day played in | {day_s:.0f} s; all stored {to_stored_s:.0f} s after the start |",
        f"| generated events/s (day average) | {v.generated / max(day_s, 1):.0f} |",
        f"| stored events/s (total / first-to-last commit) | "
        f"{f['rows'] / max(f['received_span_s'], 1):.0f} |",
        f"| stored events/s per 10 s: median / max | "
        f"{(per10[len(per10) // 2] / 10 if per10 else 0):.0f} / "
        f"{(per10[-1] / 10 if per10 else 0):.0f} |",
        f"| device add -> committed, p50 / p99 / max (ms) | "
        f"{percentile(f['hist_ts'], 0.5):.0f} / {percentile(f['hist_ts'], 0.99):.0f} / "
        f"{max(f['hist_ts'] or [0])} |",
        f"| MQTT hand-off -> committed, p50 / p99 (ms) | "
        f"{percentile(f['hist_sent'], 0.5):.0f} / {percentile(f['hist_sent'], 0.99):.0f} |",
        f"| device add -> received by ingest (PostgreSQL received_ms), p50 / p99 (ms) | "
        f"{f['pg_ts'][0]} / {f['pg_ts'][1]} |",
        f"| replicas: CPU seconds (all incarnations) / peak RSS | "
        f"{u['replicas'].total_cpu_s:.0f} s ({u['replicas'].total_cpu_s / max(day_s, 1) * 100:.0f}%"
        f" of one core over the day) / {u['replicas'].peak_rss / mb:.0f} MiB |",
        f"| broker: CPU seconds / peak RSS | {u['broker'].total_cpu_s:.0f} s / "
        f"{u['broker'].peak_rss / mb:.0f} MiB |",
        f"| agent workers: CPU seconds / peak RSS | {u['workers'].total_cpu_s:.0f} s / "
        f"{u['workers'].peak_rss / mb:.0f} MiB |",
        f"| events made before the first fault ({f['calm_rows']}): MQTT hand-off -> received,"
        f" p50 / p99 (ms) | {f['calm_sent'][0]} / {f['calm_sent'][1]} |",
        f"| same, device add -> received, p50 / p99 (ms) | {f['calm_ts'][0]} / {f['calm_ts'][1]} |",
        f"| broker connections held ($SYS clients/connected) during the day, max | "
        f"{max(conns) if conns else 'n/a'} |",
        f"| share of the day with all {args.windows} windows connected (the workers' own "
        f"count, sampled every second) | {f['held'] * 100:.1f}% |",
        "| all windows connected again, after the broker restart began | "
        + (f"{f['reconnected_s']:.0f} s |" if f["reconnected_s"] is not None else "n/a |"),
        f"| window (re)connects in total | {wt.get('connects', 0)} |",
        f"| PUBACKs refused or 'no matching subscribers', rows resent | {wt.get('rejected', 0)} |",
        "",
        "Latency notes: *device add* is the event's `ts_ms` (stamped when `Outbox.add` "
        "stored it); *committed* is when the replica's listener ran, which ingest calls only "
        "after the batch's commit; *MQTT hand-off* is `sent_ms`, when the transport gave it to "
        f"paho. A new event waits up to `poll_s` ({args.poll_s:g} s) for the transport thread "
        "to wake, which is most of the add -> committed time (see the product notes below). "
        "The percentiles include the events caught in the fault window. The histogram is "
        "per replica process; a SIGKILLed replica loses up to one second of it (never events).",
        "",
        "## Timeline",
        "",
        "```",
        *run.events_log,
        "```",
        "",
        "## Replicas",
        "",
        *[f"- {row}" for row in f["replica_rows"]],
        "",
    ]
    if v.worst:
        lines += ["## Off devices", "", *[f"- {w}" for w in v.worst], ""]
    return "\n".join(lines)


CLUSTER_BEGIN = "<!-- bench.city --cluster: begin (rewritten by each run) -->"
CLUSTER_END = "<!-- bench.city --cluster: end -->"
#: The Mosquitto run's own block: docs/city-run.md is written by hand around both.
MOSQUITTO_BEGIN = "<!-- bench.city: begin (rewritten by each run) -->"
MOSQUITTO_END = "<!-- bench.city: end -->"


def fmt_ms(v: Any) -> str:
    return "n/a" if v is None else f"{v:,}"


def render_cluster(args: Args, run: CityRun, v: Verdict, f: dict[str, Any]) -> str:
    """The cluster run's section of the report (between CLUSTER_BEGIN and CLUSTER_END)."""
    assert run.cluster is not None
    cl = run.cluster
    day_s = run.t_day_end - run.t_start
    to_stored_s = run.t_all_stored - run.t_start
    run_s = max(run.t_all_stored - run.t_begin, 1)
    wt = f["workers"]
    u = run.usage
    mb = 1024 * 1024
    node_rows = [
        f"| {n['label']} | {n['cpu_s']:.0f} s ({n['cpu_s'] / run_s * 100:.0f}% of one core "
        f"over the {run_s:.0f} s run) | {n['incarnations']} | {n['peak_rss'] / mb:.0f} MiB | "
        f"{conns} |"
        for n, conns in zip(f["nodes"], f["node_connections"], strict=True)
    ]
    phase_rows = [
        f"| {ph['name']} | {ph['from_s']:.0f}-{ph['to_s']:.0f} s | {ph['rows']:,} | "
        f"{fmt_ms(ph['sent'][0])} / {fmt_ms(ph['sent'][1])} | "
        f"{fmt_ms(ph['ts'][0])} / {fmt_ms(ph['ts'][1])} |"
        for ph in f["phases"]
    ]
    rec = f["recovery"]

    def back(what: str) -> str:
        if what not in rec:
            return "not run"
        return str(rec[what])

    verdict = "PASS: 0 lost, 0 duplicated" if v.ok else f"**FAIL**: {v.line()}"
    lines = [
        f"### {args.windows} windows in {len({s for s, _ in run.layout})} centres "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')}): {verdict}",
        "",
        "```sh",
        f"python -m bench.city --cluster --windows {args.windows} --centres {args.centres} "
        f"--events-per-window {args.events_per_window} --minutes {args.minutes:g} "
        f"--workers {args.workers} --replicas {args.replicas} --poll-s {args.poll_s:g} "
        f"--ramp-s {args.ramp_s:g} --reconnect-spread-s {args.reconnect_spread_s:g} "
        f"--keepalive-s {args.keepalive_s}"
        + (f" --connack-timeout-s {args.connack_timeout_s:g}" if args.connack_timeout_s else ""),
        "```",
        "",
        f"{os.cpu_count()} CPU cores, **shared with another engineer's work during the run** "
        f"(figures are for orders of magnitude), nats-server {cl.version()} "
        f"x {cl.size} nodes "
        + (
            "in network namespaces (veth + bridge)"
            if cl.netns
            else f"on 127.0.0.1 ({cl.why_no_netns}; no partition)"
        )
        + ", PostgreSQL on 127.0.0.1 (fresh database, dropped afterwards).",
        "",
        f"- {args.windows} windows, {args.workers} worker processes; each window its own "
        f"`Outbox` and `Transport` with `nodes` = all {cl.size} MQTT listeners, "
        f'`confirm = "stored"`, MQTT 3.1.1, keepalive {args.keepalive_s} s, '
        f"`poll_s={args.poll_s:g}`; {run.sessions * EVENTS_PER_SESSION} events/window over "
        f"the {DAY_MINUTES}-min day played in {args.minutes:g} min.",
        f"- {args.replicas} ingest replicas (`python -m bench.city.replica --from-env`: "
        "`WW_EVENTS_FROM=jetstream`, `WW_NATS_URLS` = all nodes, replica *i* on MQTT node "
        "*i* with `WW_MQTT_NODES` = the others): events from the `WW_EVENTS` stream "
        "(3 replicas) through the shared durable consumer, `Stored` confirmations back on "
        "MQTT.",
        "- Faults, one at a time: "
        + cluster_fault_text(args)
        + ("" if cl.netns else " (The partition was skipped: no network namespaces.)"),
        "",
        "| figure | value |",
        "|---|---|",
        *verdict_rows(v, wt),
        f"| day played in; all stored (and confirmed) after the start | {day_s:.0f} s; "
        f"{to_stored_s:.0f} s |",
        f"| generated events/s (day average) | {v.generated / max(day_s, 1):.0f} |",
        f"| MQTT hand-off -> committed, whole day, p50 / p99 (ms) | "
        f"{percentile(f['hist_sent'], 0.5):.0f} / {percentile(f['hist_sent'], 0.99):.0f} |",
        f"| device add -> committed, whole day, p50 / p99 / max (ms) | "
        f"{percentile(f['hist_ts'], 0.5):.0f} / {percentile(f['hist_ts'], 0.99):.0f} / "
        f"{max(f['hist_ts'] or [0])} |",
        f"| share of the day with all {args.windows} windows connected | {f['held'] * 100:.1f}% |",
        f"| all windows connected again after the node kill / the partition | "
        f"{back('node-kill')} / {back('partition')} |",
        f"| window (re)connects / node moves / SUBACK refusals | {wt.get('connects', 0)} / "
        f"{wt.get('node_moves', 0)} / {wt.get('suback_refused', 0)} |",
        f"| rows deleted on a `Stored` confirmation | {wt.get('confirmed', 0)} |",
        f"| replicas: CPU seconds (all incarnations, whole run) / peak RSS | "
        f"{u['replicas'].total_cpu_s:.0f} s / {u['replicas'].peak_rss / mb:.0f} MiB |",
        f"| agent workers: CPU seconds (whole run) / peak RSS | "
        f"{u['workers'].total_cpu_s:.0f} s / {u['workers'].peak_rss / mb:.0f} MiB |",
        f"| rows still in the outboxes at the end (never deleted unconfirmed) | "
        f"{f.get('final_depth', 'n/a')} |",
        "",
        "Per node (CPU over all incarnations, from the cluster's start to the end of the "
        "drain; connections: the most `/varz` reported "
        "during the day, MQTT clients and the replicas' NATS connections, sampled every 5 s):",
        "",
        "| node | CPU seconds | incarnations | peak RSS | connections, max |",
        "|---|---|---|---|---|",
        *node_rows,
        "",
        "Latency per phase, over the events *made* in it (PostgreSQL `received_ms` against "
        "`sent_ms`, the hand-off to paho, and `ts_ms`, the `Outbox.add`); a phase starts at "
        "its fault's time mark:",
        "",
        "| phase | day seconds | events | hand-off -> received p50 / p99 (ms) | "
        "add -> received p50 / p99 (ms) |",
        "|---|---|---|---|---|",
        *phase_rows,
        "",
        "Timeline:",
        "",
        "```",
        *run.events_log,
        "```",
        "",
        "Replicas:",
        "",
        *[f"- {row}" for row in f["replica_rows"]],
        "",
    ]
    if v.worst:
        lines += ["Off devices:", "", *[f"- {w}" for w in v.worst], ""]
    return "\n".join(lines)


def cluster_fault_text(args: Args) -> str:
    parts = []
    at = {w: a for a, w in cluster_faults(args.faults)}
    if "node-kill" in at:
        parts.append(
            f"at {at['node-kill']:.0%} of the day the node leading `WW_EVENTS` (asked with "
            f"`stream_info`) is SIGKILLed, restarted at {at['node-restart']:.0%}"
        )
    if "kill" in at:
        parts.append(
            f"at {at['kill']:.0%} replica {args.replicas} is SIGKILLed, restarted at "
            f"{at['revive']:.0%} (same client id and durable consumer)"
        )
    if "partition" in at:
        parts.append(
            f"at {at['partition']:.0%} another node (the stream's leader then, if it is not "
            f"the one killed) is partitioned (`NatsCluster.partition`), healed at "
            f"{at['heal']:.0%}"
        )
    return "; ".join(parts) + "." if parts else "none."


def write_section(
    path: Path, section: str, begin: str = CLUSTER_BEGIN, end: str = CLUSTER_END
) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` (append the markers and
    the section when the file has none): the rest of the file is kept."""
    block = f"{begin}\n\n{section}\n{end}"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1]
        new = head + block + tail
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a CI timeout, the shell) still runs the cleanup below: drop the database,
    # stop the broker and every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_nofile()  # Mosquitto inherits it: one descriptor per window
    shm_root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    shm = Path(tempfile.mkdtemp(prefix="ww-city-", dir=shm_root))
    work = Path(tempfile.mkdtemp(prefix="ww-city-work-"))
    url, drop = fresh_pg(args.pg)
    run = CityRun(args, shm, work)
    print(f"database {url.rsplit('/', 1)[1]}; outboxes in {shm}; logs in {work}", flush=True)
    status = 1
    try:
        verdict, figures = run.run(url)
        if run.cluster is not None:
            report = render_cluster(args, run, verdict, figures)
            print(report)
            if args.report is not None:
                write_section(args.report, report)
                print(f"wrote its section of {args.report}")
        else:
            report = render(args, run, verdict, figures)
            print(report)
            if args.report is not None:
                write_section(args.report, report, MOSQUITTO_BEGIN, MOSQUITTO_END)
                print(f"wrote its section of {args.report}")
        print(verdict.line(), "PASS" if verdict.ok else "FAIL", flush=True)
        status = 0 if verdict.ok else 2
    finally:
        for w in run.workers:
            if w.poll() is None:
                w.kill()
        for r in run.replicas:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.kill()
        if run.monitor is not None:
            run.monitor.close()
        if run.broker is not None:
            run.broker.stop()
        if run.cluster is not None:
            run.cluster.stop()
        if args.keep_db:
            print(f"kept database {url}")
        else:
            drop()
        shutil.rmtree(shm, ignore_errors=True)
        if status == 0:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
