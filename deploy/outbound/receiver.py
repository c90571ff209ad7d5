"""A local receiver for trying the outbound links (docs/outbound.md) on a bench or in the
demo: ``python deploy/outbound/receiver.py --port 9000 --ding-secret-file F``.

It takes what the server sends and keeps a count, never what it would do with it:

* ``POST /evaluations`` — the 好差评 forwarding (mapping ``ww-eval-1``); deduplicated by
  the ``Idempotency-Key`` header, as the platform would, and the repeats counted;
* ``POST /wecom`` — a WeCom group robot's message (``msgtype`` text or markdown);
* ``POST /dingtalk`` — a DingTalk custom robot's message, its ``timestamp`` / ``sign``
  checked with the secret like DingTalk does (a bad or stale signature: 403).

Each request is one JSON line in ``--log`` (when it came, path, kind, key, status); on
SIGINT or SIGTERM it prints the counts by kind. Loopback only; standard library only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import signal
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Receiver:
    def __init__(self, log: Path, ding_secret: str | None) -> None:
        self.log = log.open("a", encoding="utf-8")
        self.ding_secret = ding_secret
        self.keys: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def take(self, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> int:
        try:
            doc = json.loads(body)
        except ValueError:
            return self.note(path, "malformed", None, 400)
        if path == "/evaluations":
            key = headers.get("Idempotency-Key") or doc.get("evaluation_id")
            with self.lock:
                repeat = key in self.keys
                self.keys.add(key)
            return self.note(path, "evaluation repeat" if repeat else "evaluation", key, 200)
        if path == "/wecom":
            kind = f"wecom {doc.get('msgtype')}"
            return self.note(path, kind, None, 200 if "msgtype" in doc else 400)
        if path == "/dingtalk":
            if not self.signed(query):
                return self.note(path, "dingtalk bad signature", None, 403)
            return self.note(path, f"dingtalk {doc.get('msgtype')}", None, 200)
        return self.note(path, "unknown path", None, 404)

    def signed(self, query: dict[str, list[str]]) -> bool:
        if self.ding_secret is None:
            return True
        try:
            ts = int(query["timestamp"][0])
            sign = query["sign"][0]  # parse_qs has decoded it once
        except (KeyError, ValueError, IndexError):
            return False
        if abs(time.time() * 1000 - ts) > 3_600_000:
            return False
        msg = f"{ts}\n{self.ding_secret}".encode()
        digest = hmac.new(self.ding_secret.encode(), msg, hashlib.sha256).digest()
        return hmac.compare_digest(base64.b64encode(digest).decode(), sign)

    def note(self, path: str, kind: str, key: str | None, status: int) -> int:
        with self.lock:
            self.counts[kind] += 1
            line = {"at_ms": int(time.time() * 1000), "path": path, "kind": kind}
            self.log.write(json.dumps(line | {"key": key, "status": status}) + "\n")
            self.log.flush()
        return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--log", type=Path, default=Path("receiver.jsonl"))
    ap.add_argument("--ding-secret-file", type=Path, default=None)
    args = ap.parse_args()
    secret = args.ding_secret_file.read_text().strip() if args.ding_secret_file else None
    rx = Receiver(args.log, secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = rx.take(url.path, urllib.parse.parse_qs(url.query), self.headers, body)
            reply = b'{"errcode":0,"errmsg":"ok"}' if status == 200 else b'{"errcode":1}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"receiver on 127.0.0.1:{args.port}, log {args.log}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    print(json.dumps(dict(sorted(rx.counts.items())), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
