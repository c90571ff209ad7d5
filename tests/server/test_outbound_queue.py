"""The durable outbound queue and its targets file (server/outbound), on SQLite and
PostgreSQL, against a receiver this test starts on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.outbound import queue as q
from server.outbound.http_json import HttpSender
from server.outbound.targets import OFF, OutboundConfigError, Target, check, load
from server.store.db import Store
from server.store.schema import outbound_deliveries, outbound_status


def config(tmp_path: Path, url: str = "http://127.0.0.1:9/x", **extra: Any) -> Any:
    target = {"name": "province", "type": "http", "url": url, "kinds": ["evaluation"]}
    data = {"allow_hosts": ["127.0.0.1"], "backoff_s": 0.01, "backoff_cap_s": 0.05}
    return check(tmp_path / "outbound.toml", data | {"target": [target | extra]})


class Scripted:
    """A sender that answers from a script: None delivers, else the exception raised."""

    def __init__(self, script: list[Exception | None]) -> None:
        self.script = script
        self.sent: list[str] = []

    def send(self, target: Target, body: Mapping[str, Any], key: str) -> None:
        self.sent.append(key)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome


def test_a_key_is_queued_once_per_target(store: Store) -> None:
    with store.engine.begin() as conn:
        args: dict[str, Any] = {"key": "e1", "kind": "evaluation", "body": {"a": 1}, "at_ms": 5}
        assert q.enqueue(conn, target="province", **args)
        assert not q.enqueue(conn, target="province", **args)
        assert q.enqueue(conn, target="other", **args)
        rows = [
            q.delivery_row(target="province", key=k, kind="x", body={}, at_ms=5, site=None)
            for k in ("e1", "e2", "e3")
        ]
        assert q.enqueue_many(conn, rows) == 2
        n = len(conn.execute(select(outbound_deliveries.c.id)).all())
    assert n == 4


def test_retries_back_off_then_deliver_and_a_permanent_refusal_is_dead(
    store: Store, tmp_path: Path
) -> None:
    cfg = config(tmp_path, max_attempts=3)
    now = [1_000_000]
    sender = Scripted([q.Retry("HTTP 503"), q.Retry("reset"), None, q.Permanent("HTTP 400")])
    d = q.Deliverer(store.engine, cfg, {"http": sender}, clock=lambda: now[0], rand=lambda: 1.0)
    with store.engine.begin() as conn:
        q.enqueue(conn, target="province", key="a", kind="evaluation", body={}, at_ms=now[0])
    assert d.run_once() == 1 and d.run_once() == 0  # not due again before its backoff
    now[0] += 10  # backoff_s 0.01 after the first failure
    assert d.run_once() == 1
    now[0] += 19
    assert d.run_once() == 0
    now[0] += 1  # 20 ms after the second
    assert d.run_once() == 1
    with store.engine.begin() as conn:
        q.enqueue(conn, target="province", key="b", kind="evaluation", body={}, at_ms=now[0])
    assert d.run_once() == 1
    with store.engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(outbound_deliveries))}
        status = conn.execute(select(outbound_status)).one()
    assert rows["a"].status == "delivered" and rows["a"].attempts == 3
    assert rows["b"].status == "dead" and rows["b"].last_error == "refused: HTTP 400"
    assert status.last_success_ms is not None and status.last_error == "refused: HTTP 400"
    assert d.counters["province"] == {"retried": 2, "delivered": 1, "dead": 1}
    assert sender.sent == ["a", "a", "a", "b"]

    with store.engine.begin() as conn:
        assert q.resend(conn, rows["b"].id, "admin", now[0]) is not None
        assert q.resend(conn, rows["b"].id, "admin", now[0]) is None  # pending now, not dead
    assert d.run_once() == 1
    with store.engine.connect() as conn:
        assert q.counts(conn)["province"] == {"delivered": 2}


def test_attempts_spent_make_a_delivery_dead(store: Store, tmp_path: Path) -> None:
    cfg = config(tmp_path, max_attempts=2)
    now = [0]
    d = q.Deliverer(store.engine, cfg, {"http": Scripted([q.Retry("x")] * 5)}, clock=lambda: now[0])
    with store.engine.begin() as conn:
        q.enqueue(conn, target="province", key="a", kind="evaluation", body={}, at_ms=0)
    for _ in range(4):
        d.run_once()
        now[0] += 1000
    with store.engine.connect() as conn:
        assert q.counts(conn)["province"] == {"dead": 1}
        assert [r["key"] for r in q.dead_rows(conn, None)] == ["a"]
        assert q.dead_rows(conn, frozenset({"elsewhere"})) == []


def test_a_lost_claim_comes_due_after_its_lease_and_cannot_be_overwritten(
    store: Store, tmp_path: Path
) -> None:
    """A replica killed mid-send: its rows are due again when the lease ends; its late
    answer then changes nothing (the row is the second claim's)."""
    with store.engine.begin() as conn:
        q.enqueue(conn, target="province", key="a", kind="evaluation", body={}, at_ms=0)
        first = q.claim(conn, ["province"], 0, lease_ms=1000)
        assert len(first) == 1 and q.claim(conn, ["province"], 999, 1000) == []
        second = q.claim(conn, ["province"], 1000, 1000)
        assert [c.attempts for c in second] == [2]
        assert not q.settle(conn, first[0], 1001, error="late")
        assert q.settle(conn, second[0], 1002)
        assert q.counts(conn)["province"] == {"delivered": 1}


def test_replicas_skip_each_others_locked_rows(pg_url: str) -> None:
    store = Store(pg_url)
    store.create()
    try:
        with store.engine.begin() as conn:
            rows = [
                q.delivery_row(target="t", key=str(i), kind="k", body={}, at_ms=0, site=None)
                for i in range(10)
            ]
            q.enqueue_many(conn, rows)
        with store.engine.connect() as a, store.engine.connect() as b:
            ta, tb = a.begin(), b.begin()
            got_a = q.claim(a, ["t"], 0, 60_000, limit=6)
            got_b = q.claim(b, ["t"], 0, 60_000, limit=6)  # does not wait for a's locks
            ta.commit()
            tb.commit()
        assert len(got_a) == 6 and len(got_b) == 4
        assert not {c.key for c in got_a} & {c.key for c in got_b}
    finally:
        store.close()


# ------------------------------------------------------------------ the targets file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "outbound.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_is_off() -> None:
    assert load(None) is OFF and OFF.taking("evaluation") == []


def test_a_bad_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, 'allow_hosts = []\n[[target]]\nname = "p"\ntype = "fax"\nkinds = []\n')
    with pytest.raises(OutboundConfigError) as err:
        load(path)
    assert f"{path}: target[0].type:" in str(err.value)
    path = write(tmp_path, "allow_hosts = []\nbogus = 1\n")
    with pytest.raises(OutboundConfigError, match=r"outbound.toml: bogus: Extra inputs"):
        load(path)
    with pytest.raises(OutboundConfigError, match=r"missing\.toml: \(file\): missing"):
        load(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://evil.example/x", "target[0].url: host 'evil.example' is not in allow_hosts"),
        ("http://hcp.sh.gov.cn/x", "scheme http is allowed only to a loopback host"),
        ("https://u:p@hcp.sh.gov.cn/x", "credentials in the URL"),
        ("https://hcp.sh.gov.cn/x?key=abc", "credential in the URL's query (key)"),
        ("ftp://hcp.sh.gov.cn/x", "is not an http(s) URL"),
    ],
)
def test_targets_outside_the_rules_are_refused_at_start(
    tmp_path: Path, url: str, problem: str
) -> None:
    text = (
        'allow_hosts = ["hcp.sh.gov.cn"]\n[[target]]\nname = "p"\ntype = "http"\n'
        f'url = "{url}"\nkinds = ["evaluation"]\n'
    )
    with pytest.raises(OutboundConfigError) as err:
        load(write(tmp_path, text))
    assert problem in str(err.value) and str(tmp_path / "outbound.toml") in str(err.value)


def test_a_good_file_reads_its_secret_and_never_shows_it(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n", encoding="utf-8")
    text = (
        'allow_hosts = ["hcp.sh.gov.cn"]\n[[target]]\nname = "p"\ntype = "http"\n'
        'url = "https://hcp.sh.gov.cn/x"\nkinds = ["evaluation"]\n'
        f'secret_file = "{tmp_path}/token"\n'
        'districts = ["青浦区"]\n'
    )
    cfg = load(write(tmp_path, text))
    t = cfg.targets["p"]
    assert t.secret == "s3cret" and "s3cret" not in repr(t) and "s3cret" not in repr(cfg)
    assert t.serves("qingpu", "青浦区") and not t.serves("x", "其他区")
    assert [x.name for x in cfg.taking("evaluation")] == ["p"] and cfg.taking("alert") == []


# ------------------------------------------------------------------ the HTTP sender


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[int, dict[str, str], bytes]]]]:
    """Answers each POST with the status in its path (/200, /503, /404, /302)."""
    seen: list[tuple[int, dict[str, str], bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers["Content-Length"]))
            code = int(self.path.strip("/"))
            seen.append((code, dict(self.headers), data))
            self.send_response(code)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_http_sender_classifies_answers(
    tmp_path: Path, receiver: tuple[str, list[tuple[int, dict[str, str], bytes]]]
) -> None:
    base, seen = receiver
    sender = HttpSender()
    (tmp_path / "tok").write_text("abc", encoding="utf-8")
    for code, outcome in (
        (200, None),
        (503, q.Retry),
        (429, q.Retry),
        (404, q.Permanent),
        (302, q.Permanent),
    ):
        t = config(tmp_path, url=f"{base}/{code}", secret_file=str(tmp_path / "tok"))
        target = t.targets["province"]
        if outcome is None:
            sender.send(target, {"level": 5, "名": "满意"}, "k-1")
        else:
            with pytest.raises(outcome):
                sender.send(target, {}, "k-1")
    assert len(seen) == 5  # the redirect was not followed
    _, headers, data = seen[0]
    assert headers["Idempotency-Key"] == "k-1" and headers["Authorization"] == "Bearer abc"
    assert json.loads(data) == {"level": 5, "名": "满意"}
    closed = config(tmp_path, url="http://127.0.0.1:9/x", timeout_s=1).targets["province"]
    with pytest.raises(q.Retry):
        sender.send(closed, {}, "k")  # connection refused
