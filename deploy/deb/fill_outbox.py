"""Put real conduct events into an installed agent's outbox (deploy/deb/test-install.sh).

    /usr/bin/python3 -I fill_outbox.py --site /etc/warmwindow/site --window w01 \
        --state-dir /var/lib/warmwindow --broker 127.0.0.1:PORT --seconds 20

``warmwindow agent --mock-pins --scripted`` alone writes no event: nobody presses its
mock bell, so no session opens. This runs the installed package's own simulated window
(agent/sim.py: the agent as shipped, with MockFactory pins a scenario presses and a
scripted clerk) against the same state directory, so the outbox the upgrade must keep
holds events the installed rules made. With no broker on PORT they all stay there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, "/opt/warmwindow/lib")

from agent.config import load_site
from agent.perception import TYPICAL
from agent.sim import SimClock, SimulatedWindow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--window", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--broker", required=True, help="HOST:PORT (nothing listening)")
    parser.add_argument("--seconds", type=float, default=20.0, help="wall seconds to run")
    parser.add_argument("--speed", type=float, default=8.0, help="simulated s per wall s")
    args = parser.parse_args()

    site = load_site(args.site)
    window = site.window(args.window)
    host, _, port = args.broker.rpartition(":")
    broker = site.site.broker.model_copy(update={"host": host, "port": int(port)})
    sim = SimulatedWindow(
        site, window, broker, args.state_dir, TYPICAL, seed=7, clock=SimClock(speed=args.speed)
    )
    sim.start()
    time.sleep(args.seconds)
    last_seq = sim.agent.outbox.last_seq
    sim.stop(flush_s=0)
    print(f"fill_outbox: {sim.calls} calls, {sim.presses} presses, last seq {last_seq}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
