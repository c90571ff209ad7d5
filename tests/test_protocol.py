"""The wire contract: topics, validation, generated docs, and the no-image guarantee."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from agent import protocol as p
from agent.cli import main
from agent.protocol_doc import examples, render
from tests.conftest import REPO


def test_topics_round_trip() -> None:
    t = p.topic("qingpu", "w03", p.Channel.EVENT)
    assert t == "ww/v1/qingpu/w03/event"
    assert p.parse_topic(t) == ("qingpu", "w03", p.Channel.EVENT)
    for bad in ("ww/v2/qingpu/w03/event", "ww/v1/qingpu/w03/video", "ww/v1/qingpu/event"):
        with pytest.raises(ValueError):
            p.parse_topic(bad)


def test_events_never_retained_state_and_availability_retained() -> None:
    assert p.CHANNEL_QOS[p.Channel.EVENT] == (1, False)
    assert p.CHANNEL_QOS[p.Channel.CMD][1] is False
    assert p.CHANNEL_QOS[p.Channel.AVAILABILITY] == (1, True)
    assert p.CHANNEL_QOS[p.Channel.STATE][1] is True
    assert p.CHANNEL_QOS[p.Channel.CONFIG][1] is True


def test_examples_round_trip() -> None:
    for ex in examples():
        again = type(ex).model_validate_json(ex.model_dump_json())
        assert again == ex
        if isinstance(ex, p.EventHeader):
            assert p.parse_event(ex.model_dump_json()) == ex


def _walk(node: Any, path: str, problems: list[str]) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and node.get("additionalProperties") is not False:
            problems.append(f"{path}: object open to extra fields")
        if node.get("type") == "string":
            bounded = "maxLength" in node or "enum" in node or "const" in node
            if node.get("format") in ("uuid",):
                bounded = True
            if node.get("format") in ("binary", "base64") or node.get("contentEncoding"):
                problems.append(f"{path}: binary string")
            if not bounded or node.get("maxLength", 0) > 64:
                problems.append(f"{path}: unbounded string")
        if node.get("type") == "array" and node.get("maxItems", 10**9) > 16:
            problems.append(f"{path}: unbounded array")
        for key, value in node.items():
            _walk(value, f"{path}.{key}", problems)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]", problems)


def test_no_payload_can_carry_an_image() -> None:
    """Privacy (PIPL): closed models, short strings, short lists, nothing binary."""
    problems: list[str] = []
    for name, schema in p.json_schemas().items():
        _walk(schema, name, problems)
    assert problems == []
    # and the walk itself can fail: an open model with a long string is caught
    leaky = {"type": "object", "properties": {"img": {"type": "string"}}}
    caught: list[str] = []
    _walk(leaky, "leaky", caught)
    assert len(caught) == 2


def test_extra_field_such_as_an_image_is_rejected() -> None:
    ev = examples()[0]
    data = json.loads(ev.model_dump_json()) | {"frame_jpeg": "/9j/4AAQSkZJRgABAQ"}
    with pytest.raises(ValidationError):
        p.parse_event(json.dumps(data))
    long_ticket = json.loads(ev.model_dump_json()) | {"ticket": "A" * 65}
    with pytest.raises(ValidationError):
        p.parse_event(json.dumps(long_ticket))


def test_forged_site_slug_rejected() -> None:
    data = json.loads(examples()[0].model_dump_json()) | {"site": "../other"}
    with pytest.raises(ValidationError):
        p.parse_event(json.dumps(data))


def test_every_event_names_a_uuid_seq_boot_and_ms_timestamp() -> None:
    for model in p.EVENT_TYPES:
        fields = model.model_fields
        assert fields["event_id"].annotation is uuid.UUID
        assert {"seq", "boot_id", "ts_ms", "clauses", "schema_version"} <= set(fields)


def test_protocol_doc_is_current() -> None:
    """docs/protocol.md must be regenerated whenever the models change."""
    assert (REPO / "docs" / "protocol.md").read_text(encoding="utf-8") == render()
    assert main(["docs", "protocol", "--check"]) == 0


def test_protocol_doc_check_fails_when_stale(tmp_path: Any) -> None:
    stale = tmp_path / "protocol.md"
    stale.write_text(render().replace("QoS", "Qos"), encoding="utf-8")
    assert main(["docs", "protocol", "--check", "--out", str(stale)]) == 1


def _unstorable(node: Any, path: str, problems: list[str]) -> None:
    """Every integer bounded within a signed 64-bit column, every number bounded (so
    finite), every free string refusing NUL."""
    if isinstance(node, dict):
        kind = node.get("type")
        fixed = bool({"enum", "const"} & node.keys())
        if kind in ("integer", "number") and not fixed:
            lo, hi = node.get("minimum"), node.get("maximum")
            if lo is None or hi is None:
                problems.append(f"{path}: unbounded {kind}")
            elif kind == "integer" and (lo < -(2**63) or hi > p.INT64_MAX):
                problems.append(f"{path}: beyond a 64-bit column")
        parsed = node.get("format") in ("uuid", "date")  # becomes a UUID or a date
        if kind == "string" and not fixed and not parsed:
            pattern = node.get("pattern")
            if pattern is None or re.search(pattern, "a\x00b"):
                problems.append(f"{path}: accepts NUL")
        for key, value in node.items():
            _unstorable(value, f"{path}.{key}", problems)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _unstorable(value, f"{path}[{i}]", problems)


def test_every_value_fits_the_store() -> None:
    """What validates can be stored: bounded integers and floats, no NUL in any string;
    the same for the HTTP API's request bodies."""
    from server.api import models, queue, roster

    problems: list[str] = []
    for name, schema in p.json_schemas().items():
        _unstorable(schema, name, problems)
    bodies: list[type[BaseModel]] = [models.CaseClose, models.ClerkIn, models.HelpdeskKpiIn]
    bodies += [roster.SignIn, roster.SignOut, roster.PlanIn, roster.CredentialsIn]
    bodies += [queue.QueueCall, queue.QueueSignIn, queue.QueueSignOut]
    for api in bodies:
        _unstorable(api.model_json_schema(), api.__name__, problems)
    assert problems == []
    caught: list[str] = []
    _unstorable(
        {"properties": {"n": {"type": "integer", "minimum": 1}, "s": {"type": "string"}}},
        "leaky",
        caught,
    )
    assert caught == ["leaky.properties.n: unbounded integer", "leaky.properties.s: accepts NUL"]


def _strings(model: Any) -> list[str]:
    return [k for k, v in model.model_dump(mode="json").items() if isinstance(v, str)]


def test_values_the_store_cannot_hold_are_refused() -> None:
    """A NUL in any string, a seq past 2**63 - 1, a count past 2**31 - 1, a duration of
    more than a week or a float that is not finite: refused by validation, not left to
    fail the store's batch."""
    for ex in examples():
        data = json.loads(ex.model_dump_json())
        for key in _strings(ex):
            if key in ("event_id", "boot_id", "session_id", "cmd_id", "kind"):
                continue
            bad = json.dumps(data | {key: data[key][:3] + "\x00"})
            with pytest.raises(ValidationError):
                type(ex).model_validate_json(bad)
    header = json.loads(examples()[0].model_dump_json())
    with pytest.raises(ValidationError):
        p.parse_event(json.dumps(header | {"seq": 2**63}))
    assert p.parse_event(json.dumps(header | {"seq": 2**63 - 1})).seq == 2**63 - 1
    summary = next(e for e in examples() if isinstance(e, p.SessionSummary))
    too_long = json.loads(summary.model_dump_json()) | {"see_off_ms": 7 * 86_400_000 + 1}
    with pytest.raises(ValidationError):
        p.parse_event(json.dumps(too_long))
    health = next(e for e in examples() if isinstance(e, p.Health))
    for key, value in (("outbox_depth", 2**31), ("fps", "Infinity"), ("cpu_temp_c", "NaN")):
        raw = health.model_dump_json().replace(
            f'"{key}":{json.dumps(health.model_dump(mode="json")[key])}', f'"{key}":{value}'
        )
        assert raw != health.model_dump_json()
        with pytest.raises(ValidationError):
            p.Health.model_validate_json(raw)


def _stored(**kw: Any) -> dict[str, Any]:
    return {"site": "qingpu", "window": "w03", "ranges": [[1, 3]], "ts_ms": 1} | kw


def test_stored_confirmation_bounds() -> None:
    """A Stored names inclusive, ordered seq ranges within a seq's bounds, 1 to 16 of them,
    and nothing else."""
    ok = p.Stored.model_validate(_stored(ranges=[[1, 3], [7, 7], [9, p.INT64_MAX]]))
    assert ok.ranges == ((1, 3), (7, 7), (9, p.INT64_MAX))
    assert list(p.Stored.model_validate(_stored(ranges=[[4, 6], [9, 9]])).seqs()) == [4, 5, 6, 9]
    p.Stored.model_validate(_stored(ranges=[[s, s] for s in range(1, 17)]))
    bads: list[dict[str, Any]] = [
        {"ranges": []},
        {"ranges": [[s, s] for s in range(1, 18)]},
        {"ranges": [[3, 1]]},
        {"ranges": [[0, 2]]},
        {"ranges": [[1, p.INT64_MAX + 1]]},
        {"ranges": [[1, 2, 3]]},
        {"ranges": [[1]]},
        {"window": "W03"},
        {"schema_version": 2},
        {"frame_jpeg": "/9j/4AAQ"},
    ]
    for bad in bads:
        with pytest.raises(ValidationError):
            p.Stored.model_validate(_stored(**bad))
    assert "Stored" in p.json_schemas()  # so the privacy and storable walks cover it
    assert p.CHANNEL_QOS[p.Channel.STORED] == (0, False)
    assert p.parse_topic("ww/v1/qingpu/w03/stored") == ("qingpu", "w03", p.Channel.STORED)


def test_seq_ranges_compress_seqs() -> None:
    assert p.seq_ranges([]) == ()
    assert p.seq_ranges([5]) == ((5, 5),)
    assert p.seq_ranges([3, 1, 2, 7, 7, 9, 8, 12]) == ((1, 3), (7, 9), (12, 12))
    assert p.seq_ranges(range(1, 100_001)) == ((1, 100_000),)


def test_stored_messages_split_many_ranges() -> None:
    assert p.stored_messages("qingpu", "w03", [], 1) == []
    (one,) = p.stored_messages("qingpu", "w03", [1, 2, 3, 5], 7)
    assert one.ranges == ((1, 3), (5, 5)) and one.ts_ms == 7
    odd = range(1, 2 * 40, 2)  # 40 ranges of one seq each
    parts = p.stored_messages("qingpu", "w03", odd, 7)
    assert [len(m.ranges) for m in parts] == [16, 16, 8]
    assert [s for m in parts for s in m.seqs()] == list(odd)
