"""Press-to-tile latency: ``python -m bench.tile_latency [--presses 100]``.

A real window agent (MockFactory pins, scripted clerk) presses its call and finish keys;
the state travels agent -> outbox/transport -> Mosquitto -> ingest -> SSE -> the hall
page in headless Chromium, where a MutationObserver stamps the moment the tile shows the
new state. Both clocks are this machine's wall clock. Prints p50/p99/max and the ratio of
p99 to the 250 ms goal, and for comparison the bare broker round trip (publish ->
subscriber) measured in the same run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import uvicorn
from gpiozero.pins.mock import MockFactory

from agent.app import ScriptedPump, build_agent
from agent.config import BrokerConfig, load_site
from agent.localbroker import MosquittoBroker, free_port, wait_port
from agent.perception import TYPICAL, ScriptedClerk
from server.api.app import ServerSettings, create_app
from server.ingest import IngestSettings

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "firmware_config" / "sites" / "qingpu"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OBSERVE = """() => {
  window.__flips = [];
  const root = document.getElementById('tiles');
  new MutationObserver(() => {
    const t = document.getElementById('tile-qingpu-w03');
    const v = t && t.dataset.inSession;
    if (v !== window.__last) { window.__last = v; window.__flips.push([Date.now(), v]); }
  }).observe(root, {subtree: true, childList: true, attributes: true});
}"""


def broker_round_trip(broker: MosquittoBroker, n: int) -> list[float]:
    got: dict[int, float] = {}
    ev = threading.Event()

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        got[int(m.payload)] = time.perf_counter()
        ev.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lat-sub")
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("bench/rt", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lat-pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    time.sleep(0.3)
    out = []
    for i in range(n):
        ev.clear()
        t0 = time.perf_counter()
        pub.publish("bench/rt", str(i), qos=1)
        ev.wait(2)
        if i in got:
            out.append((got[i] - t0) * 1000)
    sub.loop_stop()
    pub.loop_stop()
    return out


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presses", type=int, default=100)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    site = load_site(SITE)
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker(Path(tmp) / "mq") as broker:
        port = free_port()
        app = create_app(
            ServerSettings(
                db_url=f"sqlite:///{tmp}/bench.db",
                sites=[SITE],
                mqtt=IngestSettings(port=broker.port, client_id="bench-tile"),
            )
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        wait_port("127.0.0.1", port, 20)
        app.state.accounts.add_user("bench", "bench-pass-1", "inspector")
        factory = MockFactory()
        window = site.window("w03")
        agent = build_agent(
            site,
            window,
            Path(tmp),
            pin_factory=factory,
            pump=ScriptedPump(ScriptedClerk(TYPICAL, random.Random(1))),
            broker=BrokerConfig(host=broker.host, port=broker.port),
            health_s=3600,
        )
        agent.start()
        presses: list[tuple[float, str]] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/login")
            page.fill("#username", "bench")
            page.fill("#password", "bench-pass-1")
            page.click("#submit")
            page.wait_for_selector("#tile-qingpu-w03")
            page.wait_for_selector("#conn.on")
            page.evaluate(OBSERVE)
            time.sleep(1.0)
            for i in range(args.presses):
                pin = window.gpio.call_button if i % 2 == 0 else window.gpio.finish_button
                assert pin is not None
                presses.append((time.time() * 1000, "1" if i % 2 == 0 else "0"))
                factory.pin(pin).drive_low()
                time.sleep(0.06)
                factory.pin(pin).drive_high()
                time.sleep(0.6)
            time.sleep(1.5)
            flips: list[list[Any]] = page.evaluate("window.__flips")
            browser.close()
        agent.stop()
        server.should_exit = True
        latencies = []
        for t_press, want in presses:
            seen = next((t for t, v in flips if v == want and t >= t_press), None)
            if seen is not None:
                latencies.append(seen - t_press)
        rt = broker_round_trip(broker, 200)
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"press-to-tile  n={len(lat)}/{len(presses)}  p50 {statistics.median(lat):6.1f} ms  "
        f"p99 {p99:6.1f} ms  max {lat[-1]:6.1f} ms  p99/250ms goal: {p99 / 250:.2f}"
    )
    print(
        f"baseline  broker QoS1 round trip  p50 {statistics.median(rt):5.2f} ms  "
        f"p99 {sorted(rt)[int(len(rt) * 0.99) - 1]:5.2f} ms"
    )


if __name__ == "__main__":
    main()
