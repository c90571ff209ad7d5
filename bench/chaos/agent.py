"""One simulated window of the chaos stack, as a process of its own (so it can be SIGKILLed).

``python -m bench.chaos.agent --site DIR --window w01 --state-dir DIR --port P --status F``

It is the demo's window unchanged (``agent.sim.SimulatedWindow``: the agent as
``build_agent`` wires it, with its rules, outbox and transport, MockFactory pins pressed
by the scenario, a scripted clerk), sped up by ``--pace`` (its ``SimClock`` runs 1/pace
times faster). The one addition is bookkeeping: the window is built with
``agent_type=CountingAgent``, whose ``_store`` counts the drafts the rules produced and
those lost when storing failed, because a draft that never got a sequence number is
invisible in the outbox's ``last_seq``. It re-raises, so the agent behaves exactly as
shipped.

Every 0.5 s it writes ``--status`` (JSON): drafts, refused, last_seq, depth, whether the
rule loop is alive (what the systemd watchdog watches), link state.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from agent.app import WindowAgent
from agent.config import BrokerConfig, load_site
from agent.events import Draft
from agent.perception import TYPICAL
from agent.sim import SimClock, SimulatedWindow
from bench.proc import stop_on_signals, write_json


class CountingAgent(WindowAgent):
    """``WindowAgent`` that counts drafts in and drafts refused by the outbox."""

    drafts = 0
    refused = 0
    last_error = ""

    def _store(self, drafts: list[Draft]) -> None:
        before = self.outbox.last_seq
        self.drafts += len(drafts)
        try:
            super()._store(drafts)
        except Exception as exc:
            # Drafts after the failing one in this batch are lost with it.
            stored = self.outbox.last_seq - before
            self.refused += max(0, len(drafts) - stored)
            self.last_error = f"{type(exc).__name__}: {exc}"[:120]
            raise


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--site", type=Path, required=True)
    ap.add_argument("--window", required=True)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keepalive-s", type=int, default=5, help="dead-link detection")
    ap.add_argument("--pace", type=float, default=0.1, help="scenario time scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--status", type=Path, required=True)
    ap.add_argument("--max-s", type=float, default=3600, help="hard stop, whatever happens")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"{args.window} %(levelname)s %(message)s")

    stop = stop_on_signals()

    site = load_site(args.site)
    sim = SimulatedWindow(
        site,
        site.window(args.window),
        BrokerConfig(host=args.host, port=args.port, keepalive_s=args.keepalive_s),
        args.state_dir,
        TYPICAL,
        seed=args.seed,
        clock=SimClock(speed=1 / args.pace),
        agent_type=CountingAgent,
    )
    wa = sim.agent
    assert isinstance(wa, CountingAgent)

    def status(final: bool = False) -> None:
        write_json(
            args.status,
            {
                "pid": os.getpid(),
                "t": time.time(),
                "drafts": wa.drafts,
                "refused": wa.refused,
                "last_error": wa.last_error,
                "last_seq": wa.outbox.last_seq,
                "depth": wa.outbox.depth,
                "healthy": wa.healthy(),
                "link": str(wa.link.link),
                "calls": sim.calls,
                "final": final,
            },
        )

    sim.start()
    started = time.monotonic()
    while not stop.wait(0.5) and time.monotonic() - started < args.max_s:
        status()
    sim.stop()
    status(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
