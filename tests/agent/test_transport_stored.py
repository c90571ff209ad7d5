"""``BrokerConfig.confirm = "stored"`` against a real Mosquitto: a row leaves the outbox
only at the aggregator's ``Stored``, and an unconfirmed one goes again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.config import BrokerConfig
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.protocol import Channel, Stored, topic
from agent.transport import Transport
from tests.agent import Subscriber, draft
from tests.waiting import wait_until

SITE, WINDOW = "qingpu", "w01"


@pytest.fixture
def server(broker: MosquittoBroker) -> Iterator[mqtt.Client]:
    """The aggregator's publishing side: sends ``Stored`` confirmations."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-stored-server")
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def confirm(server: mqtt.Client, payload: str | bytes) -> None:
    server.publish(topic(SITE, WINDOW, Channel.STORED), payload, qos=1).wait_for_publish(5)


def stored(*ranges: tuple[int, int], window: str = WINDOW) -> str:
    return Stored(site=SITE, window=window, ranges=ranges, ts_ms=1).model_dump_json()


def seqs(box: Outbox) -> list[int]:
    return [r.seq for r in box.peek(1000)]


def test_rows_stay_until_stored_and_unconfirmed_ones_go_again(
    broker: MosquittoBroker, server: mqtt.Client, tmp_path: Path
) -> None:
    cfg = BrokerConfig(
        host=broker.host, port=broker.port, keepalive_s=5, confirm="stored", confirm_timeout_s=1.0
    )
    sub = Subscriber(broker.host, broker.port)
    try:
        with (
            Outbox(tmp_path / "outbox.db", SITE, WINDOW) as box,
            Transport(cfg, SITE, WINDOW, box) as link,
        ):
            wait_until(lambda: link.connected, 10, "connection")
            events = [box.add(draft(i)) for i in range(10)]
            wait_until(lambda: len(sub.unique()) == 10, 10, "all ten delivered")
            # Every PUBACK came, and every row is still in the outbox.
            wait_until(lambda: link.stats().unconfirmed == 10, 10, "ten PUBACKs")
            assert seqs(box) == list(range(1, 11))
            assert all(not c["historical"] for c in sub.copies[:10])

            # A confirmation deletes exactly its ranges.
            confirm(server, stored((1, 3), (6, 6)))
            wait_until(lambda: link.stats().confirmed == 4, 10, "four confirmed")
            assert seqs(box) == [4, 5, 7, 8, 9, 10]

            # Forged or malformed confirmations are counted and change nothing.
            confirm(server, stored((4, 10), window="w02"))  # another window's, our topic
            confirm(server, b"not json")
            confirm(server, '{"site":"qingpu","window":"w01","ranges":[[9,4]],"ts_ms":1}')
            confirm(server, stored((4, 10)).replace('"ts_ms"', '"frame":"x","ts_ms"'))
            wait_until(lambda: link.stats().bad_stored == 4, 10, "four ignored")
            assert seqs(box) == [4, 5, 7, 8, 9, 10]

            # Unconfirmed after confirm_timeout_s: sent again, historical, same event_id.
            ids = {str(e.event_id) for e in events if e.seq in (4, 5, 7, 8, 9, 10)}

            def resent() -> set[str]:
                return {c["event_id"] for c in sub.copies if c["historical"]}

            wait_until(lambda: resent() >= ids, 10, "resends of the unconfirmed rows")
            confirmed_ids = {str(e.event_id) for e in events if e.seq in (1, 2, 3, 6)}
            assert not resent() & confirmed_ids, "a confirmed row went again"
            assert len(sub.unique()) == 10  # the same events, nothing new

            # The rest confirmed, one message: the outbox empties, nothing waits.
            confirm(server, stored((4, 5), (7, 10)))
            wait_until(lambda: box.depth == 0, 10, "outbox empty")
            wait_until(lambda: link.stats().unconfirmed == 0, 10, "nothing unconfirmed")
            stats = link.stats()
            assert stats.confirmed == 10 and stats.acked == 0
    finally:
        sub.close()


def test_puback_mode_deletes_at_the_puback_and_ignores_stored(
    broker: MosquittoBroker, server: mqtt.Client, tmp_path: Path
) -> None:
    cfg = BrokerConfig(host=broker.host, port=broker.port, keepalive_s=5)
    assert cfg.confirm == "puback"
    sub = Subscriber(broker.host, broker.port)  # else MQTT 5 PUBACKs say "no subscribers"
    try:
        with (
            Outbox(tmp_path / "outbox.db", SITE, WINDOW) as box,
            Transport(cfg, SITE, WINDOW, box) as link,
        ):
            wait_until(lambda: link.connected, 10, "connection")
            for i in range(5):
                box.add(draft(i))
            wait_until(lambda: box.depth == 0, 10, "deleted at the PUBACK")
            confirm(server, b"not json")  # not subscribed: never even seen
            wait_until(lambda: link.stats().acked == 5, 10, "five acked")
            stats = link.stats()
            assert (stats.unconfirmed, stats.confirmed, stats.bad_stored) == (0, 0, 0)
    finally:
        sub.close()
