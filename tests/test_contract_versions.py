"""A contract that can grow: versions of the event contract, the server's side of it,
and one terminal and one server over a real Mosquitto.

``V2`` is a test-only second version grown from the base contract (version 1 alone)
that adds one optional field to ``smiled``, so the mechanism is exercised apart from the
product's own version 2 (the call's ticket and matter, the farewell smile, sign-ins at
the terminal), which is checked at the end of the contract section. The terminal's own
side (announcements, downgrade) is in ``tests/agent/test_transport_versions.py``.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import Field, ValidationError

from agent import protocol as p
from agent.config import BrokerConfig
from agent.events import Draft
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.protocol_doc import examples
from agent.transport import Transport
from server.ingest import Ingest, IngestSettings
from server.store.db import Store
from tests.server import conftest as server_fixtures
from tests.waiting import wait_until

#: The aggregator tests' store fixture: SQLite and PostgreSQL, the example site registered.
store = server_fixtures.store

#: The test-only version 2: ``smiled`` gains an optional ``note``.
V2 = p.BASE_CONTRACT.extend(
    {"smiled": {"note": (p.ShortText | None, Field(None, description="Test-only field."))}}
)
SMILED_V2 = next(m for m in V2.event_types(2) if m.__name__ == "Smiled")


def smiled_v1() -> dict[str, Any]:
    ex = next(e for e in examples() if isinstance(e, p.Smiled))
    data: dict[str, Any] = ex.model_dump(mode="json")
    return data


def smiled_v2(note: str | None = "farewell too") -> dict[str, Any]:
    return smiled_v1() | {"schema_version": 2, "note": note}


# --------------------------------------------------------------------------- the contract


def test_the_base_contract_is_version_1() -> None:
    assert p.BASE_CONTRACT.versions == (1,)
    assert p.BASE_CONTRACT.event_types(1) == p.EVENT_TYPES
    for ex in examples():
        if isinstance(ex, p.EventHeader) and ex.schema_version == 1:
            assert p.BASE_CONTRACT.parse_event(ex.model_dump_json()) == ex
            assert p.parse_event(ex.model_dump_json()) == ex


def test_the_product_contract_is_versions_1_2_and_3() -> None:
    assert p.CONTRACT.versions == (1, 2, 3) and p.CONTRACT.newest == p.SCHEMA_VERSION
    opened = p.CONTRACT.model_for("session_opened")
    summary = p.CONTRACT.model_for(p.SessionSummary)
    assert issubclass(summary, p.SessionSummary) and issubclass(opened, p.SessionOpened)
    assert set(opened.model_fields) - set(p.SessionOpened.model_fields) == {
        "call_id",
        "matter_code",
        "matter_name",
        "priority_category",
        "case_number",
    }
    assert {"smiled_at_farewell", "ticket", "source", "greeted_first"} <= set(summary.model_fields)
    # sign-ins at the terminal are new in version 2: a v1 server never gets one
    assert p.CONTRACT.since("clerk_at_terminal") == 2
    signed = p.ClerkAtTerminal(
        event_id=uuid.uuid4(),
        site="qingpu",
        window="w01",
        seq=1,
        boot_id=uuid.uuid4(),
        ts_ms=1,
        action="sign_in",
        method="badge",
        clerk_id="c-li",
    )
    assert p.parse_event(signed.model_dump_json()) == signed
    with pytest.raises(p.NotInVersion) as held:
        p.CONTRACT.downgrade(signed.model_dump(mode="json"), 1)
    assert (held.value.kind, held.value.needs) == ("clerk_at_terminal", 2)
    with pytest.raises(p.UnsupportedVersion):
        p.BASE_CONTRACT.parse_event(signed.model_dump_json())
    # a v2 summary downgrades to what a v1 server stores
    v2 = p.V2_CONTRACT.model_for(p.SessionSummary).model_validate(
        next(e for e in examples() if isinstance(e, p.SessionSummary)).model_dump()
        | {"schema_version": 2, "ticket": "A013", "smiled_at_farewell": True}
    )
    old = p.CONTRACT.downgrade(v2.model_dump(mode="json"), 1)
    assert "ticket" not in old and p.BASE_CONTRACT.parse_event(json.dumps(old)).schema_version == 1


def test_not_observed_is_never_dropped_on_the_way_to_an_older_server() -> None:
    """Version 3's ``not_observed`` changes what the older fields mean (False = could not
    be seen, not "did not"): an event that sets it is held, never downgraded."""
    summary = p.CONTRACT.model_for("session_summary")
    smiled = p.CONTRACT.model_for("smiled")
    assert {"not_observed", "observed_share"} <= set(summary.model_fields)
    example = next(e for e in examples() if getattr(e, "not_observed", None))
    data = example.model_dump(mode="json")
    assert data["smiled_at_greeting"] is False and "smiled_at_greeting" in data["not_observed"]
    assert p.parse_event(json.dumps(data)) == example
    for older in (1, 2):
        with pytest.raises(p.NotInVersion) as held:
            p.CONTRACT.downgrade(data, older)
        assert (held.value.kind, held.value.needs, held.value.field) == (
            "session_summary",
            3,
            "not_observed",
        )
    # Observed in full: nothing is held, and what is only information (the share) drops.
    seen = data | {"not_observed": None, "observed_share": 0.9}
    assert "observed_share" not in p.CONTRACT.downgrade(seen, 2)
    flagged = smiled.model_validate(
        next(e for e in examples() if isinstance(e, p.Smiled)).model_dump()
        | {"schema_version": 3, "on_time": False, "not_observed": True}
    )
    with pytest.raises(p.NotInVersion):
        p.CONTRACT.downgrade(flagged.model_dump(mode="json"), 2)
    assert p.CONTRACT.downgrade(flagged.model_dump(mode="json") | {"not_observed": False}, 2)
    # A held field must be one the version adds.
    with pytest.raises(ValueError, match="held fields must be added here"):
        p.BASE_CONTRACT.extend({}, held_if_set={"smiled": ("on_time",)})


def test_a_version_is_the_previous_one_plus_optional_fields() -> None:
    assert V2.versions == (1, 2) and p.BASE_CONTRACT.versions == (1,)  # extend makes a new one
    assert issubclass(SMILED_V2, p.Smiled)  # code reading v1 events reads v2 alike
    for v1, v2 in zip(V2.event_types(1), V2.event_types(2), strict=True):
        assert issubclass(v2, v1) and set(v2.model_fields) >= set(v1.model_fields)
    assert set(SMILED_V2.model_fields) - set(p.Smiled.model_fields) == {"note"}
    assert not SMILED_V2.model_fields["note"].is_required()
    # What the rule forbids, extend refuses.
    with pytest.raises(ValueError, match="exist already"):
        p.BASE_CONTRACT.extend({"smiled": {"score": (int, Field(0))}})
    with pytest.raises(ValueError, match="need a default"):
        p.BASE_CONTRACT.extend({"smiled": {"matter": (p.ShortText, Field(...))}})
    with pytest.raises(ValueError, match="no such event kinds"):
        p.BASE_CONTRACT.extend({"greeted": {"x": (int, Field(0))}})
    with pytest.raises(ValueError, match="exists already"):
        p.BASE_CONTRACT.extend({}, new_kinds=(p.Smiled,))
    with pytest.raises(ValueError, match="must say so"):  # version 2's kind in a version 3
        V2.extend({}, new_kinds=(p.ClerkAtTerminal,))


def test_parse_event_dispatches_on_schema_version() -> None:
    v2 = V2.parse_event(json.dumps(smiled_v2()))
    assert type(v2) is SMILED_V2 and v2.schema_version == 2
    assert v2.note == "farewell too"
    v1 = V2.parse_event(json.dumps(smiled_v1()))
    assert type(v1) is p.Smiled and v1.schema_version == 1
    assert V2.parse_event(json.dumps(smiled_v2(None))).schema_version == 2  # optional
    # A field is valid only in the versions that have it.
    with pytest.raises(ValidationError):
        V2.parse_event(json.dumps(smiled_v1() | {"note": "not in v1"}))
    # No schema_version: version 1 always defaulted it, and so does a contract that grew.
    bare = {k: v for k, v in smiled_v1().items() if k != "schema_version"}
    assert V2.parse_event(json.dumps(bare)).schema_version == 1
    assert p.parse_event(json.dumps(bare)).schema_version == 1


def test_an_unknown_version_is_unsupported_not_malformed() -> None:
    with pytest.raises(p.UnsupportedVersion) as v1_only:
        p.BASE_CONTRACT.parse_event(json.dumps(smiled_v2()))
    assert (v1_only.value.version, v1_only.value.known) == (2, (1,))
    with pytest.raises(p.UnsupportedVersion):
        V2.parse_event(json.dumps(smiled_v1() | {"schema_version": 3}))
    # Not a version at all, or not valid in a known one: malformed.
    for bad in (
        smiled_v1() | {"schema_version": "2"},
        smiled_v1() | {"schema_version": 1.5},
        smiled_v2() | {"score": 7},
        smiled_v1() | {"frame_jpeg": "/9j/4AAQ"},
    ):
        with pytest.raises(ValidationError):
            V2.parse_event(json.dumps(bad))
    for raw in (b"{not json", b"[2]", b'"schema_version"'):
        with pytest.raises(ValidationError):
            V2.parse_event(raw)


def test_downgrade_drops_what_the_older_version_lacks() -> None:
    old = V2.downgrade(smiled_v2(), 1)
    assert old == smiled_v1()
    assert p.BASE_CONTRACT.parse_event(json.dumps(old)) == p.parse_event(json.dumps(smiled_v1()))
    # A kind that gained nothing only changes its version.
    stood = next(e for e in examples() if isinstance(e, p.StoodUp)).model_dump(mode="json")
    assert V2.downgrade(stood | {"schema_version": 2}, 1) == stood
    assert V2.downgrade(smiled_v2(), 2) == smiled_v2()


def test_the_common_version_is_the_highest_both_know() -> None:
    assert V2.common({1, 2}) == 2
    assert V2.common({1}) == 1
    assert V2.common({1, 2, 3}) == 2  # a newer server: what this side knows
    assert V2.common(()) == 1  # nothing in common: the base version
    assert p.BASE_CONTRACT.common({1, 2}) == 1


def test_accepts_topics() -> None:
    t = p.accepts_topic("ww-server-1")
    assert t == "ww/v1/_server/accepts/ww-server-1"
    assert p.parse_accepts_topic(t) == "ww-server-1"
    with pytest.raises(ValueError):
        p.parse_topic(t)  # never taken for a window's topic
    for bad in ("", "a/b", "+", "#", "x" * 65):
        with pytest.raises(ValueError):
            p.accepts_topic(bad)
    assert p.parse_accepts_topic("ww/v1/qingpu/w01/config") is None
    assert p.parse_accepts_topic("ww/v1/_server/accepts/a/b") is None


# --------------------------------------------------------------------------- the server


def _publisher(b: MosquittoBroker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def _event(data: dict[str, Any], window: str = "w01") -> dict[str, Any]:
    return data | {"event_id": str(uuid.uuid4()), "site": "qingpu", "window": window}


def _retained_accepts(b: MosquittoBroker) -> dict[str, p.Accepts]:
    """Every retained announcement on the broker, by topic."""
    got: dict[str, p.Accepts] = {}
    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
    c.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got[msg.topic] = p.Accepts.model_validate_json(msg.payload)

    c.on_message = on_message
    c.connect(b.host, b.port)
    c.loop_start()
    c.subscribe(p.ACCEPTS_SUBSCRIPTION, qos=1)
    subscribed.wait(5)
    try:
        wait_until(lambda: bool(got), 5, "a retained announcement")
    finally:
        c.disconnect()
        c.loop_stop()
    return got


def test_a_v1_server_rejects_v2_and_counts_it(broker: MosquittoBroker, store: Store) -> None:
    settings = IngestSettings(port=broker.port, client_id="ww-test-v1")
    ingest = Ingest(store, settings, contract=p.BASE_CONTRACT)
    ingest.start()
    try:
        assert ingest.wait_connected()
        pub = _publisher(broker)
        t = p.topic("qingpu", "w01", p.Channel.EVENT)
        ok = _event(smiled_v1())
        for data in (ok, _event(smiled_v2()), _event(smiled_v1()) | {"note": "x"}):
            pub.publish(t, json.dumps(data), qos=1).wait_for_publish(5)
        wait_until(lambda: sum(ingest.stats.rejected.values()) >= 2 and store.event_count() >= 1)
        pub.loop_stop()
    finally:
        ingest.stop()
    assert set(store.event_ids()) == {ok["event_id"]}
    assert store.reject_counts() == {"unsupported_version": 1, "malformed": 1}
    accepts = _retained_accepts(broker)
    assert accepts == {
        "ww/v1/_server/accepts/ww-test-v1": p.Accepts(
            server="ww-test-v1", versions=(1,), ts_ms=accepts[p.accepts_topic("ww-test-v1")].ts_ms
        )
    }


def test_a_v1_v2_server_accepts_both(broker: MosquittoBroker, store: Store) -> None:
    ingest = Ingest(store, IngestSettings(port=broker.port, client_id="ww-test-v2"), contract=V2)
    ingest.start()
    try:
        assert ingest.wait_connected()
        pub = _publisher(broker)
        t = p.topic("qingpu", "w01", p.Channel.EVENT)
        one, two = _event(smiled_v1()), _event(smiled_v2())
        for data in (one, two, _event(smiled_v1()) | {"schema_version": 3}):
            pub.publish(t, json.dumps(data), qos=1).wait_for_publish(5)
        wait_until(lambda: store.event_count() >= 2 and ingest.stats.rejected.total() >= 1)
        pub.loop_stop()
    finally:
        ingest.stop()
    assert set(store.event_ids()) == {one["event_id"], two["event_id"]}
    assert store.reject_counts() == {"unsupported_version": 1}
    stored = {r["event_id"]: r["payload"] for r in store.latest_events()}
    assert stored[two["event_id"]]["note"] == "farewell too"
    assert stored[two["event_id"]]["schema_version"] == 2
    assert "note" not in stored[one["event_id"]]
    assert _retained_accepts(broker)[p.accepts_topic("ww-test-v2")].versions == (1, 2)


def test_a_bad_client_id_cannot_name_an_announcement(store: Store) -> None:
    with pytest.raises(ValueError, match="accepts topic"):
        Ingest(store, IngestSettings(client_id="ww/server"))


# --------------------------------------------------------------------------- both sides


def test_a_v2_terminal_sends_v1_to_a_v1_server_and_v2_once_it_is_upgraded(
    broker: MosquittoBroker, store: Store, tmp_path: Path
) -> None:
    """The rollout: the server is upgraded first, the terminal follows its announcement.
    Nothing is rejected on the way: a v1 server never receives a v2 event."""
    fields = {k: smiled_v2()[k] for k in ("phase", "on_time", "after_ms", "score", "note")}

    def add(box: Outbox) -> str:
        return str(box.add(Draft(kind=SMILED_V2, ts_ms=p.now_ms(), fields=fields)).event_id)

    settings = IngestSettings(port=broker.port, client_id="ww-test-rollout")
    box = Outbox(tmp_path / "outbox.db", "qingpu", "w01", contract=V2)  # V2's newest
    cfg = BrokerConfig(host=broker.host, port=broker.port, keepalive_s=5)
    ingest = Ingest(store, settings, contract=p.BASE_CONTRACT)  # version 1 only
    ingest.start()
    try:
        assert ingest.wait_connected()
        with Transport(cfg, "qingpu", "w01", box, contract=V2) as link:
            wait_until(lambda: link.connected, 10, "connection")
            first = add(box)
            wait_until(lambda: store.event_count() == 1, 10, "the first event stored")
            assert link.send_version == 1
            ingest.stop()
            ingest = Ingest(store, settings, contract=V2)  # the upgraded server
            ingest.start()
            assert ingest.wait_connected()
            wait_until(lambda: link.send_version == 2, 10, "the upgraded announcement")
            second = add(box)
            wait_until(lambda: store.event_count() == 2, 10, "the second event stored")
            assert link.stats().send_version == 2
    finally:
        ingest.stop()
        box.close()
    assert store.reject_counts() == {}
    stored = {r["event_id"]: r["payload"] for r in store.latest_events()}
    assert stored[first]["schema_version"] == 1 and "note" not in stored[first]
    assert stored[second]["schema_version"] == 2 and stored[second]["note"] == "farewell too"
