"""One aggregator replica for the city run: ``server.ingest.Ingest`` in a process of its own.

``python -m bench.city.replica --url URL --port P --client-id ID --share-group G --stats F``

With ``--from-env`` the ingest's settings come from the ``WW_*`` environment as the
aggregator reads them (``server.settings.ServerEnv``): the cluster run
(``bench.city --cluster``) sets ``WW_EVENTS_FROM=jetstream``, ``WW_NATS_URLS``,
``WW_MQTT_HOST``/``_PORT``, ``WW_MQTT_NODES``, ``WW_MQTT_PROTOCOL`` and
``WW_MQTT_CLIENT_ID``.

It runs the product's ingest unchanged (validate, commit, then acknowledge) on a shared
subscription; the only addition is a listener, which ingest calls after the commit, that
measures how long each stored event took (device add -> commit, MQTT hand-off -> commit)
into a histogram written to ``--stats`` every second. SIGTERM stops it cleanly; the city
run SIGKILLs one replica midway, losing at most a second of histogram, never an event.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.proc import stop_on_signals, write_json
from server.ingest import Ingest, IngestSettings
from server.settings import ServerEnv
from server.store.db import Store


def bucket(ms: int) -> int:
    """Histogram bucket: 1 ms below 1 s, 10 ms below 10 s, 100 ms above."""
    if ms < 1000:
        return max(ms, 0)
    if ms < 10_000:
        return ms - ms % 10
    return ms - ms % 100


class LatencyListener:
    """Ingest listener: called after the batch holding the event was committed."""

    def __init__(self) -> None:
        self.from_ts: Counter[int] = Counter()
        self.from_sent: Counter[int] = Counter()
        self.events = 0

    def __call__(self, msg: dict[str, Any]) -> None:
        if msg.get("type") != "event":
            return
        now = time.time_ns() // 1_000_000
        ev = msg["event"]
        self.events += 1
        self.from_ts[bucket(now - int(ev["ts_ms"]))] += 1
        if ev.get("sent_ms") is not None:
            self.from_sent[bucket(now - int(ev["sent_ms"]))] += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--client-id", required=True)
    ap.add_argument(
        "--from-env",
        action="store_true",
        help="ingest settings from the WW_* environment (server.settings.ServerEnv)",
    )
    ap.add_argument("--share-group", default="ww-city")
    ap.add_argument("--stats", type=Path, required=True)
    ap.add_argument("--max-hours", type=float, default=6.0, help="hard stop, whatever happens")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"{args.client_id} %(levelname)s %(message)s")

    stop = stop_on_signals()

    store = Store(args.url)
    if args.from_env:
        settings = ServerEnv().ingest_settings()
    else:
        settings = IngestSettings(
            port=args.port, client_id=args.client_id, share_group=args.share_group
        )
    # Listeners must hear from the storing subscription, after the commit; a separate
    # "live feed" client (when this ingest version has one) would call them on receipt.
    if hasattr(settings, "live_feed"):
        settings.live_feed = False
    ingest = Ingest(store, settings)
    listener = LatencyListener()
    ingest.add_listener(listener)
    ingest.start()
    started = time.monotonic()

    def dump() -> None:
        s = ingest.stats
        write_json(
            args.stats,
            {
                "pid": os.getpid(),
                "connected": s.connected,
                # Subscribed, and (from a stream) the consumer pulling.
                "ready": ingest.wait_connected(0.05),
                "received": s.received,
                "stored": s.stored,
                "duplicates": s.duplicates,
                "rejected": dict(s.rejected),
                "listened": listener.events,
                "from_ts": dict(listener.from_ts),
                "from_sent": dict(listener.from_sent),
            },
        )

    # Bounded: the parent stops us, and if it died we stop ourselves.
    while not stop.wait(1.0) and time.monotonic() - started < args.max_hours * 3600:
        dump()
    ingest.stop()
    dump()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
