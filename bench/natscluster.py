"""A local NATS cluster (Debian's nats-server 2.9) for tests and benches: N nodes, JetStream
replicated by Raft, an MQTT listener on every node.

Faults are the ones a city's IT department will see: ``kill(i)`` (SIGKILL, the store stays),
``start_node(i)`` (same store, same ports), ``freeze(i)``/``thaw(i)`` (SIGSTOP/SIGCONT: a
node that hangs but keeps its sockets), ``partition(i)``/``heal(i)``.

A partition needs ``netns=True``: each node then runs in its own network namespace
(``wwn-<name>-<i>``) with a veth pair to a host bridge (``wwb-<name>``) on a private
10.213.x.0/24; ``partition(i)`` takes the node's host-side link down, cutting its routes
*and* its MQTT clients, as a pulled cable would. This machine has no iptables/nft, so
there is no loopback-only partition. Names are derived from ``name`` so a crashed run's
leftovers are deleted by the next ``start()`` (and by ``stop()``), idempotently.

Example::

    with NatsCluster(tmp_path, 3) as c:
        host, port = c.mqtt_nodes()[0]
        c.kill(0); c.start_node(0)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import psutil

from bench.city.broker import quiet_port

NATS_SERVER = os.environ.get("WW_NATS_SERVER", "/usr/sbin/nats-server")


@dataclass
class NatsNode:
    """One server: its ports, files and (while running) its process."""

    name: str
    host: str
    client_port: int
    mqtt_port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    conf_path: Path
    log_path: Path
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def monitor(self, path: str, timeout: float = 2.0) -> dict[str, Any]:
        """A monitoring endpoint (``/healthz``, ``/jsz``, ``/varz``) as JSON."""
        url = f"http://{self.host}:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            doc: dict[str, Any] = json.loads(r.read())
        return doc


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class NatsCluster:
    """``nodes`` nats-server processes forming one cluster; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        *,
        name: str = "ww",
        extra_conf: str | Callable[[NatsNode], str] = "",
        max_payload: int | None = None,
        netns: bool = False,
        ready_timeout_s: float = 60.0,
        mqtt_conf: str = "stream_replicas: 3\n",
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if not Path(NATS_SERVER).exists():
            raise FileNotFoundError(f"{NATS_SERVER} not found (apt-get install nats-server)")
        self.workdir = Path(workdir)
        self.name = name
        self.extra_conf = extra_conf
        self.max_payload = max_payload
        self.use_netns = netns
        self.ready_timeout_s = ready_timeout_s
        self.mqtt_conf = mqtt_conf
        tag = hashlib.sha1(name.encode()).hexdigest()
        self._short = tag[:6]  # interface names are at most 15 characters
        self._subnet = f"10.213.{int(tag[6:8], 16) % 250 + 1}"
        self.bridge = f"wwb-{self._short}"
        self.nodes: list[NatsNode] = []
        for i in range(nodes):
            d = self.workdir / f"n{i}"
            self.nodes.append(
                NatsNode(
                    name=f"{name}-n{i}",
                    host=f"{self._subnet}.{10 + i}" if netns else "127.0.0.1",
                    client_port=quiet_port(),
                    mqtt_port=quiet_port(),
                    cluster_port=quiet_port(),
                    http_port=quiet_port(),
                    store_dir=d / "js",
                    conf_path=d / "nats.conf",
                    log_path=d / "nats.log",
                    netns=f"wwn-{self._short}-{i}" if netns else None,
                )
            )

    # ------------------------------------------------------------------ addresses

    def nats_urls(self) -> list[str]:
        return [f"nats://{n.host}:{n.client_port}" for n in self.nodes]

    def mqtt_nodes(self) -> list[tuple[str, int]]:
        return [(n.host, n.mqtt_port) for n in self.nodes]

    # ------------------------------------------------------------------ config

    def conf(self, node: NatsNode) -> str:
        """The node's configuration file: listeners, JetStream store, routes, MQTT."""
        listen = "0.0.0.0" if node.netns else node.host
        routes = ", ".join(f"nats-route://{n.host}:{n.cluster_port}" for n in self.nodes)
        extra = self.extra_conf(node) if callable(self.extra_conf) else self.extra_conf
        lines = [
            f"server_name: {node.name}",
            f"listen: {listen}:{node.client_port}",
            f"http: {listen}:{node.http_port}",
            f"max_payload: {self.max_payload}" if self.max_payload else "",
            f'jetstream {{ store_dir: "{node.store_dir}", max_mem: 64MB, max_file: 2GB }}',
            f"cluster {{ name: {self.name}, listen: {listen}:{node.cluster_port},"
            f" routes: [{routes}] }}"
            if len(self.nodes) > 1
            else "",
            f"mqtt {{ listen: {listen}:{node.mqtt_port}\n{self.mqtt_conf}}}",
            extra,
        ]
        return "\n".join(line for line in lines if line) + "\n"

    # ------------------------------------------------------------------ network

    def _netns_down(self) -> None:
        for n in self.nodes:
            assert n.netns is not None
            _run("ip", "netns", "del", n.netns, check=False)  # takes its veth end along
            _run("ip", "link", "del", self._veth(n), check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    def _veth(self, node: NatsNode) -> str:
        return f"wwh-{self._short}-{self.nodes.index(node)}"

    def _netns_up(self) -> None:
        self._netns_down()  # leftovers of a crashed run with the same name
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self._subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for n in self.nodes:
            assert n.netns is not None
            veth = self._veth(n)
            _run("ip", "netns", "add", n.netns)
            _run(
                "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n.netns
            )
            _run("ip", "link", "set", veth, "master", self.bridge)
            _run("ip", "link", "set", veth, "up")
            ns = ("ip", "netns", "exec", n.netns)
            _run(*ns, "ip", "addr", "add", f"{n.host}/24", "dev", "eth0")
            _run(*ns, "ip", "link", "set", "eth0", "up")
            _run(*ns, "ip", "link", "set", "lo", "up")

    def partition(self, i: int) -> None:
        """Cut node ``i`` off from the other nodes and from its clients (needs netns)."""
        if not self.use_netns:
            raise RuntimeError("partition needs NatsCluster(netns=True)")
        _run("ip", "link", "set", self._veth(self.nodes[i]), "down")

    def heal(self, i: int) -> None:
        if not self.use_netns:
            raise RuntimeError("heal needs NatsCluster(netns=True)")
        _run("ip", "link", "set", self._veth(self.nodes[i]), "up")

    # ------------------------------------------------------------------ processes

    def start(self) -> None:
        """Start every node; return when all answer /healthz and JetStream has a meta
        leader that sees every peer current."""
        if self.use_netns:
            self._netns_up()
        try:
            for i in range(len(self.nodes)):
                self._spawn(i)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, i: int) -> None:
        n = self.nodes[i]
        n.store_dir.mkdir(parents=True, exist_ok=True)
        n.conf_path.write_text(self.conf(n), encoding="utf-8")
        cmd = [NATS_SERVER, "-c", str(n.conf_path)]
        if n.netns:
            cmd = ["ip", "netns", "exec", n.netns, *cmd]  # exec: the pid is nats-server's
        log = n.log_path.open("ab")
        try:
            n.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def start_node(self, i: int, *, wait: bool = True) -> None:
        """Restart node ``i`` with the same store and ports (after ``kill``)."""
        if self.nodes[i].pid is not None:
            raise RuntimeError(f"{self.nodes[i].name} is running")
        self._spawn(i)
        if wait:
            self.wait_ready()

    def kill(self, i: int) -> None:
        """SIGKILL: no goodbye to clients or peers; the store on disk stays."""
        n = self.nodes[i]
        if n.proc is not None and n.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(n.proc.pid, signal.SIGCONT)  # a frozen node dies all the same
            n.proc.kill()
            n.proc.wait(10)

    def freeze(self, i: int) -> None:
        """SIGSTOP: the node keeps its sockets open but answers nothing."""
        pid = self.nodes[i].pid
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        pid = self.nodes[i].pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.proc.pid, signal.SIGCONT)
                n.proc.terminate()
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(10)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait(5)
        if self.use_netns:
            self._netns_down()

    # ------------------------------------------------------------------ readiness

    def running(self) -> list[NatsNode]:
        return [n for n in self.nodes if n.pid is not None]

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name, when every running node's view has one
        and the leader sees every running peer current."""
        names = {n.name for n in self.running()}
        for n in self.running():
            try:
                mc = n.monitor("/jsz").get("meta_cluster", {})
            except (OSError, ValueError):
                continue
            if mc.get("leader") != n.name:
                continue
            if len(self.nodes) == 1:
                return n.name
            current = {r["name"] for r in mc.get("replicas") or [] if r.get("current")}
            return n.name if names - {n.name} <= current else None
        return None

    def healthy(self) -> bool:
        for n in self.running():
            try:
                if n.monitor("/healthz").get("status") != "ok":
                    return False
            except (OSError, ValueError):
                return False
        return bool(self.running()) and self.meta_leader() is not None

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.ready_timeout_s)
        while not self.healthy():
            for n in self.nodes:
                if n.proc is not None and n.proc.poll() is not None and n.proc.returncode != -9:
                    tail = n.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{n.name} exited {n.proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster {self.name} not ready: {self.describe()}")
            time.sleep(0.2)

    def describe(self) -> str:
        out = []
        for n in self.nodes:
            try:
                mc = n.monitor("/jsz").get("meta_cluster", {})
                out.append(f"{n.name}: leader={mc.get('leader')}")
            except (OSError, ValueError) as e:
                out.append(f"{n.name}: {e}")
        return "; ".join(out)

    def node_stats(self) -> list[dict[str, Any]]:
        """Per node: cpu seconds (user+system) and RSS bytes, ``None`` when not running."""
        out: list[dict[str, Any]] = []
        for n in self.nodes:
            row: dict[str, Any] = {"name": n.name, "pid": n.pid, "cpu_s": None, "rss": None}
            if n.pid is not None:
                with contextlib.suppress(psutil.Error):
                    p = psutil.Process(n.pid)
                    t = p.cpu_times()
                    row["cpu_s"] = t.user + t.system
                    row["rss"] = p.memory_info().rss
            out.append(row)
        return out

    def stream_leader(self, stream: str, timeout: float = 10.0) -> int | None:
        """Index of the node leading ``stream``, asked of the running nodes; None when none
        answers within ``timeout`` or the stream has no leader."""

        async def ask() -> str | None:
            nc = await nats.connect(
                servers=[f"nats://{n.host}:{n.client_port}" for n in self.running()],
                connect_timeout=2,
                max_reconnect_attempts=1,
                allow_reconnect=False,
            )
            try:
                info = await nc.jetstream(timeout=timeout / 2).stream_info(stream)
                return str(info.cluster.leader) if info.cluster and info.cluster.leader else None
            finally:
                await nc.close()

        try:
            name = asyncio.run(asyncio.wait_for(ask(), timeout))
        except Exception:  # no answer is an answer here: the caller decides what it means
            return None
        names = [n.name for n in self.nodes]
        return names.index(name) if name in names else None

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
