"""The wire contract: topics, validation, generated docs, and the no-image guarantee."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

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
