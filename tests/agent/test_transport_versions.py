"""The terminal's side of a growing contract, over a real Mosquitto: it reads the
ingests' retained announcements and sends each event at the highest version every
announcing ingest accepts, dropping the fields an older version lacks.

``V2`` (test-only: ``smiled`` gains an optional ``note``) is defined with the server's
side in ``tests/test_contract_versions.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent import protocol as p
from agent.config import BrokerConfig
from agent.events import Draft
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.transport import Transport
from tests.agent import Subscriber, draft
from tests.test_contract_versions import SMILED_V2, V2
from tests.waiting import wait_until

SITE = "qingpu"
NOTE = {"phase": "farewell", "on_time": True, "after_ms": 900, "note": "see-off smile"}


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    """An outbox whose events are V2's (the test-only contract's newest)."""
    box = Outbox(tmp_path / "outbox.db", SITE, "w01", contract=V2)
    yield box
    box.close()


def cfg(b: MosquittoBroker) -> BrokerConfig:
    return BrokerConfig(host=b.host, port=b.port, keepalive_s=5)


def announce(b: MosquittoBroker, server: str, versions: tuple[int, ...] | None) -> None:
    """What an ingest does on connect (``None``: clear the retained announcement; a
    tuple with 0 in it: an announcement no terminal can read)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-announce-{server}")
    c.connect(b.host, b.port)
    c.loop_start()
    if versions is None:
        payload = b""
    elif 0 in versions:
        payload = b'{"schema_version": 1, "server": "%s", "versions": []}' % server.encode()
    else:
        payload = p.Accepts(server=server, versions=versions, ts_ms=1).model_dump_json().encode()
    c.publish(p.accepts_topic(server), payload, qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def sent(sub: Subscriber, n: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(sub.unique()) >= n, 10, f"{n} events")
    return sub.unique()


def test_without_an_announcement_events_go_out_at_version_1(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    sub = Subscriber(broker.host, broker.port)
    stored = outbox.add(Draft(kind=SMILED_V2, ts_ms=1_700_000_000_000, fields=NOTE))
    assert stored.schema_version == 2  # the outbox keeps the newest form
    assert outbox.peek(1)[0].payload.count('"note"') == 1
    with Transport(cfg(broker), SITE, "w01", outbox, contract=V2) as link:
        wait_until(lambda: link.connected, 10, "connection")
        (ev,) = sent(sub, 1)
        assert link.send_version == 1
    assert ev["schema_version"] == 1 and "note" not in ev
    assert ev["event_id"] == str(stored.event_id) and ev["phase"] == "farewell"
    p.parse_event(json.dumps(ev))  # what a version 1 server takes
    sub.close()


def test_v1_and_v2_announced_sends_v2_and_every_ingest_must_accept_it(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    sub = Subscriber(broker.host, broker.port)
    announce(broker, "ww-server-1", (1, 2))
    with Transport(cfg(broker), SITE, "w01", outbox, contract=V2) as link:
        wait_until(lambda: link.send_version == 2, 10, "the v1+v2 announcement")
        outbox.add(Draft(kind=SMILED_V2, ts_ms=1_700_000_000_000, fields=NOTE))
        outbox.add(draft(0))  # a kind V2 did not grow: the newest version all the same
        first, other = sent(sub, 2)
        assert first["schema_version"] == 2 and first["note"] == "see-off smile"
        assert other["schema_version"] == 2
        for ev in (first, other):
            V2.parse_event(json.dumps(ev))
        # A second ingest that knows version 1 only: back to version 1 at once.
        announce(broker, "ww-server-2", (1,))
        wait_until(lambda: link.send_version == 1, 10, "the v1-only announcement")
        outbox.add(Draft(kind=SMILED_V2, ts_ms=1_700_000_000_001, fields=NOTE))
        third = sent(sub, 3)[2]
        assert third["schema_version"] == 1 and "note" not in third
        # That ingest is upgraded: version 2 again.
        announce(broker, "ww-server-2", (1, 2))
        wait_until(lambda: link.send_version == 2, 10, "both ingests upgraded")
    sub.close()


def test_a_newer_server_gets_the_newest_version_this_terminal_knows(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    announce(broker, "ww-server-1", (1, 2, 3))
    with Transport(cfg(broker), SITE, "w01", outbox, contract=V2) as link:
        wait_until(lambda: link.send_version == 2, 10, "the announcement")
    base = p.BASE_CONTRACT  # a terminal that knows version 1 only
    with Transport(cfg(broker), SITE, "w01", outbox, contract=base) as old:
        wait_until(lambda: old.connected, 10, "connection")
        assert old.send_version == 1


def test_cleared_and_unreadable_announcements_are_safe(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    announce(broker, "ww-server-1", (1, 2))
    with Transport(cfg(broker), SITE, "w01", outbox, contract=V2) as link:
        wait_until(lambda: link.send_version == 2, 10, "the announcement")
        announce(broker, "ww-server-2", (0,))  # unreadable: taken as version 1 only
        wait_until(lambda: link.send_version == 1, 10, "the unreadable announcement")
        announce(broker, "ww-server-2", None)  # cleared: that ingest is forgotten
        wait_until(lambda: link.send_version == 2, 10, "the cleared announcement")
        announce(broker, "ww-server-1", None)  # none left: the base version
        wait_until(lambda: link.send_version == 1, 10, "no announcement left")
