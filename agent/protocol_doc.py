"""Render docs/protocol.md from the wire contract (``warmwindow docs protocol``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import BaseModel

from agent import protocol as p

_EV = uuid.UUID("3f2b8a8e-5b7e-4c1a-9a55-2f4f0f1d9c01")
_BOOT = uuid.UUID("9d0c7f52-0d8e-4d43-8f3e-6f0a3a6b1e22")
_SESSION = uuid.UUID("c1a5e0f4-7a8b-4e55-b0c2-1d2e3f405162")
_T = 1_764_393_600_000  # 2025-11-29 05:20 UTC


def _header(seq: int, ts: int, *clauses: p.Clause) -> dict[str, Any]:
    return {
        "event_id": _EV,
        "site": "qingpu",
        "window": "w03",
        "seq": seq,
        "boot_id": _BOOT,
        "ts_ms": ts,
        "session_id": _SESSION,
        "clauses": clauses,
    }


def examples() -> list[BaseModel]:
    c = p.Clause
    # later versions' models are made by Contract.extend: not known to the type checker
    opened_v2: Any = p.V2_CONTRACT.model_for("session_opened")
    summary_v2: Any = p.V2_CONTRACT.model_for("session_summary")
    summary_v3: Any = p.CONTRACT.model_for("session_summary")
    return [
        p.SessionOpened(**_header(41, _T, c.W_CALL), source="bell", ticket="A017"),
        p.StoodUp(
            **_header(42, _T + 1200, c.W_CALL, c.W_TWO_STANDS),
            phase="greeting",
            on_time=True,
            after_ms=1200,
        ),
        p.Smiled(
            **_header(43, _T + 2000, c.G_SMILE, c.W_CALL),
            phase="greeting",
            on_time=True,
            after_ms=2000,
            score=0.86,
        ),
        p.Evaluated(**_header(44, _T + 240_000, c.W_EVALUATE), rating=p.Rating.SATISFIED),
        p.SessionSummary(
            **_header(45, _T + 245_000, c.W_TWO_STANDS, c.W_FAREWELL, c.W_EVALUATE),
            opened_ms=_T,
            closed_ms=_T + 240_000,
            closed_by="evaluation",
            stood_on_call=True,
            stand_after_ms=1200,
            smiled_at_greeting=True,
            smile_after_ms=2000,
            smile_peak=0.86,
            stood_at_farewell=True,
            see_off_ms=4100,
            rating=p.Rating.SATISFIED,
        ),
        p.Away(
            **(_header(46, _T + 900_000, c.W_AWAY_SIGN) | {"session_id": None}),
            started_ms=_T + 800_000,
            ended_ms=_T + 900_000,
            with_sign=False,
            violation=True,
        ),
        p.SignWhilePresent(
            **(_header(47, _T + 1_300_000, c.W_AWAY_SIGN) | {"session_id": None}),
            started_ms=_T + 1_000_000,
            duration_ms=300_000,
        ),
        p.Fault(
            **(_header(48, _T + 1_400_000) | {"session_id": None}),
            code="camera_frozen",
            detail="no new frame for 10 s",
        ),
        opened_v2(
            **(_header(49, _T + 2_000_000, c.W_CALL) | {"schema_version": 2}),
            source="queue",
            ticket="B022",
            priority=True,
            call_id="qp-20261102-0213",
            matter_code="310118-0042",
            matter_name="居住证办理",
            priority_category="elderly",
            case_number="QP2026110200213",
        ),
        summary_v2(
            **(_header(50, _T + 2_300_000, c.W_TWO_STANDS, c.W_FAREWELL) | {"schema_version": 2}),
            opened_ms=_T + 2_000_000,
            closed_ms=_T + 2_290_000,
            closed_by="evaluation",
            stood_on_call=True,
            stand_after_ms=900,
            smiled_at_greeting=True,
            smile_after_ms=1500,
            smile_peak=0.74,
            stood_at_farewell=True,
            see_off_ms=3800,
            rating=p.Rating.VERY_SATISFIED,
            priority=True,
            source="queue",
            ticket="B022",
            call_id="qp-20261102-0213",
            matter_code="310118-0042",
            matter_name="居住证办理",
            priority_category="elderly",
            case_number="QP2026110200213",
            smiled_at_farewell=True,
            farewell_smile_after_ms=700,
        ),
        # A masked clerk: the smile at the greeting could not be seen. Not a failure.
        summary_v3(
            **(_header(52, _T + 3_100_000, c.W_TWO_STANDS, c.W_FAREWELL) | {"schema_version": 3}),
            opened_ms=_T + 2_800_000,
            closed_ms=_T + 3_090_000,
            closed_by="evaluation",
            stood_on_call=True,
            stand_after_ms=1100,
            smiled_at_greeting=False,
            stood_at_farewell=True,
            see_off_ms=3500,
            rating=p.Rating.SATISFIED,
            source="queue",
            ticket="B023",
            smiled_at_farewell=False,
            not_observed=("smiled_at_greeting", "smiled_at_farewell"),
            observed_share=0.08,
        ),
        p.ClerkAtTerminal(
            **(_header(51, _T - 600_000) | {"session_id": None}),
            action="sign_in",
            method="badge",
            clerk_id="c-li",
        ),
        p.WindowState(
            site="qingpu",
            window="w03",
            ts_ms=_T,
            present=True,
            standing=False,
            in_session=True,
            sign_up=False,
            perception="camera",
            commands=p.Command.NEWEST,
        ),
        p.Health(
            site="qingpu",
            window="w03",
            ts_ms=_T,
            uptime_s=86_400,
            fps=9.8,
            inference_ms=11.5,
            cpu_temp_c=52.1,
            load1=0.4,
            outbox_depth=0,
            model_version="face-1+smile-1",
            config_version="2025-11-28.1",
        ),
        # A queue call with its version 2 fields; a terminal whose state says commands 1
        # gets Command.downgrade(1): ticket and priority only.
        p.Command(
            cmd_id=_EV,
            action="call",
            ticket="B022",
            call_id="qp-20261102-0213",
            matter_code="310118-0042",
            matter_name="居住证办理",
            priority_category="elderly",
            case_number="QP2026110200213",
        ),
        p.Reply(cmd_id=_EV, ok=False, error="unknown action"),
        p.Accepts(server="ww-server-1", versions=p.CONTRACT.versions, ts_ms=_T),
        # The ingest committed seqs 41-48 and 52 of this window (49-51 not yet).
        p.Stored(site="qingpu", window="w03", ranges=((41, 48), (52, 52)), ts_ms=_T + 3_200_000),
    ]


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in spec:
        return " or ".join(_type(s) for s in spec["anyOf"])
    if "enum" in spec:
        return " or ".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
    if "const" in spec:
        return json.dumps(spec["const"])
    t = spec.get("type", "any")
    if t == "array":
        return f"array of {_type(spec.get('items', {}))}"
    fmt = spec.get("format")
    return f"{t} ({fmt})" if fmt else str(t)


def _limits(spec: dict[str, Any]) -> str:
    keys = ("minimum", "maximum", "maxLength", "maxItems", "pattern")
    parts = [f"{k}={spec[k]}" for k in keys if k in spec]
    for alt in spec.get("anyOf", []):
        parts += [f"{k}={alt[k]}" for k in keys if k in alt]
    return ", ".join(parts)


def _versions() -> list[str]:
    known = ", ".join(str(v) for v in p.CONTRACT.versions)
    return [
        "## Versions",
        "",
        f"Event schema versions of this contract: {known}. The topic root stays "
        f"`{p.TOPIC_ROOT}`: a version grows the payloads, never the topic tree.",
        "",
        "- **One rule.** Version N of an event is version N-1 plus optional fields (each "
        "with a default) under `schema_version` N; nothing is removed, renamed or "
        "narrowed. A version may add a kind; a terminal holds an event of a kind the "
        "ingests do not accept yet in its outbox (in order, with what follows) until they "
        "announce it. `Contract.extend` in `agent/protocol.py` is the only way to make a "
        "version, so the rule holds by construction; a change it does not allow needs a "
        "new topic root.",
        "- **The server accepts every version it knows.** `parse_event` dispatches on "
        "`schema_version` (a payload without one is version 1). An integer version the "
        "ingest does not know is rejected and counted as `unsupported_version` "
        '(`ww_ingest_rejected_total{reason="unsupported_version"}`), not as `malformed`.',
        f"- **It says so.** On every connect each ingest publishes an `Accepts` "
        f"(below), retained, QoS 1, on `{p.ACCEPTS_ROOT}/<server>`, `<server>` being its "
        "MQTT client id. Terminals may read these topics (the broker ACL).",
        "- **A terminal sends what every server accepts.** It subscribes to "
        f"`{p.ACCEPTS_SUBSCRIPTION}` and sends events at the highest version that it and "
        "every announcing ingest know; before any announcement arrives, and for an "
        "announcement it cannot read, that is the base version (1). An empty retained "
        "message (the announcement cleared) forgets that ingest; clear the topic of an "
        "ingest taken out of service, or the fleet keeps to its versions.",
        "- **Downgrade on the way out.** The outbox keeps each event in the newest form "
        "the terminal made; the transport drops the fields the version it sends lacks "
        "(whatever their value: the older server could not store them) and writes that "
        "`schema_version`. An event already handed to MQTT is resent as it was sent.",
        "- **Servers are upgraded first**, then terminals. A version goes out only once "
        "every announcing ingest accepts it, so a server never receives a version it "
        "does not know from a terminal that has read the announcements.",
        "",
        "Version 2 adds what the queue system's call brings (`call_id`, service matter "
        "code and name, the H-PRIORITY `priority_category`, the service case number) to "
        "`session_opened` and `session_summary`; the session's `source`, `ticket`, the "
        "farewell smile (W-FAREWELL) and the front desk's `greeted_first` (F-RECEIVE) to "
        "the summary; and the kind `clerk_at_terminal` (a badge or PIN sign-in at the "
        "terminal: the staff id only, never the badge number or PIN).",
        "",
        "Version 3 says what could be seen: `not_observed` on `stood_up` and `smiled` "
        "(True: the verdict is 'not observed', its `on_time` False means nothing) and on "
        "`session_summary` (the verdicts that were not observed), and the summary's "
        "`observed_share`. A verdict is not observed when the camera could not see the "
        "clerk's mouth (smiles) or posture (stands) for more than 20 % of the time the "
        "rule looked (`RuleConfig.min_observed_share`): a mask, a hand, a turned head, "
        "backlight, a blocked lens, or a clerk at the seat whose face is lost. These "
        "fields are *held if set*: an event that sets one is never downgraded to a "
        "version without it (the older server would read its False as 'did not'); it "
        "waits in the outbox, like a new kind, until every ingest accepts version 3.",
        "",
        "Commands have versions of their own: version 2 of `Command` adds the queue "
        "call's fields (`call_id`, `matter_code`, `matter_name`, `priority_category`, "
        "`case_number`). A terminal refuses fields it does not know, so it says in its "
        "retained `WindowState.commands` the newest version it takes (absent: 1); the "
        "server sends it nothing newer (`Command.downgrade`). A command that does not "
        "say its `schema_version` is the lowest version that holds its fields.",
        "",
        "Other payloads (state, health, replies, `Accepts`, `Stored`) are version 1 and "
        "not yet under this rule.",
        "",
        "## Stored: end-to-end confirmation",
        "",
        "A broker's PUBACK says the broker has the event, not that the store does (a "
        "clustered broker may PUBACK before it has replicated it). After each commit the "
        f"ingest publishes a `Stored` (QoS {p.CHANNEL_QOS[p.Channel.STORED][0]}, not "
        f"retained) on `{p.topic('<site>', '<window>', p.Channel.STORED)}`: the "
        "inclusive seq ranges of that window's events now in the store, including those "
        'it had stored already (a resend). A terminal with `broker.confirm = "stored"` '
        "keeps each outbox row until a `Stored` covers its seq, and sends a row again "
        "(`historical` true, same `event_id`) when no confirmation came within "
        "`broker.confirm_timeout_s`, pausing longer each time. QoS 0 on purpose: on NATS "
        "every QoS 1 subscription is a replicated consumer per terminal, and a lost "
        "confirmation only costs a resend that the store keeps once. At most "
        f"{p.STORED_MAX_RANGES} ranges per message (`stored_messages` splits).",
    ]


def render() -> str:
    out = [
        "# WarmWindow wire protocol (v1)",
        "",
        "Generated from `agent/protocol.py` by `warmwindow docs protocol`; "
        "`tests/test_protocol.py` fails when this file is stale. Do not edit by hand.",
        "",
        "## Topics",
        "",
        f"Root `{p.TOPIC_ROOT}`; `<site>` and `<window>` are lower-case slugs.",
        "",
        "| topic | QoS | retained |",
        "|---|---|---|",
    ]
    for ch, (qos, retain) in p.CHANNEL_QOS.items():
        out.append(
            f"| `{p.topic('<site>', '<window>', ch)}` | {qos} | {'yes' if retain else 'no'} |"
        )
    qos, retain = p.ACCEPTS_QOS
    out.append(f"| `{p.ACCEPTS_ROOT}/<server>` | {qos} | {'yes' if retain else 'no'} |")
    out += [
        "",
        f"Availability payloads are the plain strings `{p.ONLINE}` (birth, retained) and "
        f"`{p.OFFLINE}` (last will, retained). Every other payload is UTF-8 JSON.",
        "",
        "Privacy: every payload model forbids unknown fields, strings are bounded "
        "(64 characters at most), lists are bounded, and no field is binary: "
        "no payload can carry an image.",
        "",
        *_versions(),
        "",
        "## Payloads",
    ]
    ex = {type(m).__name__: m for m in examples()}
    for name, schema in p.json_schemas().items():
        out += ["", f"### {name}", ""]
        doc = (schema.get("description") or "").strip()
        if doc:
            out += [doc.splitlines()[0], ""]
        out += ["| field | type | required | limits | description |", "|---|---|---|---|---|"]
        required = set(schema.get("required", []))
        for field, spec in schema["properties"].items():
            desc = spec.get("description", "").replace("|", "\\|")
            req = "yes" if field in required else "no"
            out.append(f"| `{field}` | {_type(spec)} | {req} | {_limits(spec)} | {desc} |")
        if name in ex:
            body = json.dumps(ex[name].model_dump(mode="json"), ensure_ascii=False, indent=2)
            out += ["", "```json", body, "```"]
    return "\n".join(out) + "\n"
