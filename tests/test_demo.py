"""`warmwindow demo` end to end: 12 windows -> MQTT -> server -> SQLite -> page."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from agent.localbroker import free_port
from tests.conftest import REPO


def test_demo_brings_all_windows_within_10s_each_event_stored_once(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "demo",
            "--port",
            str(port),
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "windows running" in line:
                break
        creds = dict(re.findall(r"login (\w+)\s+password (\S+)", "".join(lines)))
        assert set(creds) == {"admin", "manager", "inspector", "viewer"}
        started = time.monotonic()
        assert any(f"http://127.0.0.1:{port}/" in ln for ln in lines), lines
        assert any("through the real ONNX" in ln for ln in lines)
        base = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base)
        assert http.get("/").status_code in (302, 307)  # sign in first
        login = http.post("/api/login", json={"username": "viewer", "password": creds["viewer"]})
        assert login.status_code == 200
        assert "/static/app.js" in http.get("/").text
        seen: set[str] = set()
        with http.stream("GET", "/api/stream", timeout=15) as stream:
            for raw in stream.iter_lines():
                if raw.startswith("data: "):
                    msg = json.loads(raw[6:])
                    if msg["type"] == "event":
                        seen.add(msg["event"]["window"])
                if len(seen) == 12 or time.monotonic() - started > 10:
                    break
        assert len(seen) == 12, f"events from {sorted(seen)} only within 10 s"
        windows = http.get("/api/windows").json()
        assert {w["window"] for w in windows if w["online"]} == {f"w{i:02d}" for i in range(1, 13)}
        assert all(w["state"] and w["state"]["perception"] == "camera" for w in windows)
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        lines.append(out)
    assert proc.returncode == 0, "".join(lines)
    assert "stopped." in lines[-1]
    db = sqlite3.connect(tmp_path / "warmwindow.db")
    stored = db.execute(
        "SELECT site, window, count(*), count(DISTINCT seq), max(seq) FROM events GROUP BY 1, 2"
    ).fetchall()
    assert len(stored) == 12
    for site, window, n, distinct, top in stored:
        outbox = sqlite3.connect(tmp_path / "agents" / f"{site}-{window}.outbox.db")
        (last_seq,) = outbox.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        (waiting,) = outbox.execute("SELECT count(*) FROM outbox").fetchone()
        # every event the agent made is stored exactly once, none left behind
        assert (n, distinct, top, waiting) == (last_seq, last_seq, last_seq, 0), (
            window,
            n,
            last_seq,
        )
    offline = db.execute("SELECT count(*) FROM devices WHERE online").fetchone()[0]
    assert offline == 0  # each agent said goodbye on Ctrl-C
