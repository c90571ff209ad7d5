"""The alert channels (server/outbound/channels.py) against receivers this test starts on
127.0.0.1: a DingTalk robot that checks the 加签 signature as DingTalk does, a WeCom
robot that checks the message formats, and an aiosmtpd mail server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as email_policy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller

from server.outbound.alerts import message_body
from server.outbound.channels import (
    DingTalkSender,
    SmtpSender,
    WeComSender,
    dingtalk_sign,
)
from server.outbound.queue import Permanent, Retry
from server.outbound.targets import Target
from server.policy.alert_push import Message, PushAlert, alert_key, summary_key

SECRET = "SEC0123456789abcdef"
NOW = 1_796_000_000_000  # 2026-12-01T...; the senders' clock in these tests
REVIEW = PushAlert(
    "8f1d2c3e-0000-4000-8000-000000000001",
    "qingpu",
    "w03",
    "bad_review",
    NOW - 60_000,
    "S1042",
    {"rating": "very_dissatisfied"},
)
CENTRES = {"qingpu": "青浦区行政服务中心"}
LABELS = {("qingpu", "w03"): "3号窗口"}


def alert_body() -> dict[str, Any]:
    m = Message("ops", alert_key(REVIEW.alert_id), "alert", NOW, (REVIEW,))
    return message_body(m, "Asia/Shanghai", CENTRES, LABELS)


def summary_body(n: int = 196) -> dict[str, Any]:
    alerts = tuple(
        PushAlert(f"a{i}", "qingpu", f"w{i % 12:02}", "offline" if i % 4 else "fault", NOW + i)
        for i in range(n)
    )
    m = Message("ops", summary_key(a.alert_id for a in alerts), "summary", NOW, alerts, "storm")
    return message_body(m, "Asia/Shanghai", CENTRES, LABELS)


class Robot(http.server.BaseHTTPRequestHandler):
    """Answers like a group robot: HTTP 200 and an ``errcode``."""

    received: list[tuple[dict[str, list[str]], dict[str, Any]]]
    check: Any  # (query, body) -> (errcode, errmsg)
    status = 200

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        query = parse_qs(urlsplit(self.path).query)
        body = json.loads(raw.decode("utf-8"))
        self.received.append((query, body))
        code, msg = type(self).check(query, body)
        out = json.dumps({"errcode": code, "errmsg": msg}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def dingtalk_check(query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, str]:
    """What DingTalk does with a signed robot's request: the token, a timestamp within
    an hour of its clock, the signature recomputed from its own copy of the secret."""
    if query.get("access_token") != ["tok-ding"]:
        return 300001, "token is not exist"
    ts = int(query["timestamp"][0])
    if abs(time.time() * 1000 - ts) > 3_600_000:
        return 310000, "sign not match, more than one hour"
    want = base64.b64encode(
        hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest()
    ).decode()
    if query.get("sign") != [want]:
        return 310000, "sign not match"
    if body.get("msgtype") == "markdown":
        ok = isinstance(body["markdown"].get("title"), str) and body["markdown"].get("text")
    else:
        ok = body.get("msgtype") == "text" and body["text"].get("content")
    return (0, "ok") if ok else (40035, "bad body")


def wecom_check(query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, str]:
    if query.get("key") != ["key-wecom"]:
        return 93000, "invalid webhook url"
    kind = body.get("msgtype")
    if kind not in ("text", "markdown") or set(body) != {"msgtype", kind}:
        return 40008, "invalid message type"
    content = body[kind].get("content")
    if not isinstance(content, str) or not content:
        return 44004, "empty content"
    if len(content.encode("utf-8")) > {"text": 2048, "markdown": 4096}[kind]:
        return 40058, "content exceed max length"
    return 0, "ok"


@pytest.fixture
def robot() -> Iterator[tuple[str, type[Robot]]]:
    handler = type("R", (Robot,), {"received": [], "check": staticmethod(wecom_check)})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/robot/send", handler
    srv.shutdown()
    srv.server_close()


def target(kind: Any, url: str, **kw: Any) -> Target:
    return Target(name="ops", type=kind, kinds=frozenset({"alert"}), url=url, **kw)


def test_dingtalk_signature_is_what_dingtalk_computes() -> None:
    # DingTalk's documented example, computed by hand the documented way.
    ts, secret = 1577262236757, "SEC_example"
    digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    from urllib.parse import quote_plus

    assert dingtalk_sign(ts, secret) == quote_plus(base64.b64encode(digest))
    assert "+" not in dingtalk_sign(ts, secret) and "/" not in dingtalk_sign(ts, secret)


def test_dingtalk_receiver_verifies_the_signature(robot: tuple[str, type[Robot]]) -> None:
    url, handler = robot
    handler.check = staticmethod(dingtalk_check)
    t = target("dingtalk", url, token="tok-ding", secret=SECRET)
    sender = DingTalkSender()
    sender.send(t, alert_body(), "k1")
    sender.send(t, summary_body(), "k2")
    text_target = target(
        "dingtalk", url, token="tok-ding", secret=SECRET, options={"msgtype": "text"}
    )
    sender.send(text_target, alert_body(), "k3")
    assert len(handler.received) == 3
    md = handler.received[0][1]["markdown"]
    assert "青浦区行政服务中心" in md["text"] and "S1042" in md["text"] and "差评" in md["title"]
    assert "非常不满意" in md["text"] and "w03（3号窗口）" in md["text"]
    assert handler.received[2][1]["text"]["content"].startswith("【暖心窗口】差评")
    # A stale clock (2 h behind) and a wrong secret are refused by the receiver: final.
    stale = DingTalkSender(clock=lambda: int(time.time() * 1000) - 7_200_000)
    with pytest.raises(Permanent, match="310000"):
        stale.send(t, alert_body(), "k4")
    with pytest.raises(Permanent, match="310000"):
        DingTalkSender().send(
            target("dingtalk", url, token="tok-ding", secret="wrong"), alert_body(), "k5"
        )
    assert len(handler.received) == 5


def test_wecom_receiver_gets_valid_text_and_markdown(robot: tuple[str, type[Robot]]) -> None:
    url, handler = robot
    base = {"dashboard_url": "https://ww.qingpu.example/"}
    md = target("wecom", url, token="key-wecom", options=base)
    text = target("wecom", url, token="key-wecom", options=base | {"msgtype": "text"})
    sender = WeComSender()
    for t in (md, text):
        sender.send(t, alert_body(), "k")
        sender.send(t, summary_body(), "s")
    bodies = [b for _, b in handler.received]
    assert [b["msgtype"] for b in bodies] == ["markdown", "markdown", "text", "text"]
    first = bodies[0]["markdown"]["content"]
    assert first.startswith('### <font color="warning">【暖心窗口】差评 · 青浦区行政服务中心')
    assert f"(https://ww.qingpu.example/#/cases/{REVIEW.alert_id})" in first
    assert "工作人员工号**：S1042" in first
    summary = bodies[3]["text"]["content"]
    assert "提醒汇总 196 条" in summary and "终端离线 147，终端故障 49" in summary
    assert "其余 186 条请在看板查看" in summary and "https://ww.qingpu.example/#/alerts" in summary
    # No face, no image: nothing but text reaches the robot.
    assert all(set(b) == {"msgtype", b["msgtype"]} for b in bodies)


def test_wecom_answers_decide_retry_or_permanent(robot: tuple[str, type[Robot]]) -> None:
    url, handler = robot
    sender = WeComSender()
    with pytest.raises(Permanent, match="93000"):
        sender.send(target("wecom", url, token="not-the-key"), alert_body(), "k")
    handler.check = staticmethod(lambda q, b: (45009, "api freq out of limit"))
    with pytest.raises(Retry, match="45009"):
        sender.send(target("wecom", url, token="key-wecom"), alert_body(), "k")
    handler.status = 503
    with pytest.raises(Retry, match="503"):
        sender.send(target("wecom", url, token="key-wecom"), alert_body(), "k")
    with pytest.raises(Retry, match="connection"):
        sender.send(target("wecom", "http://127.0.0.1:9/none", token="k"), alert_body(), "k")


def test_a_huge_summary_fits_wecoms_byte_limits(robot: tuple[str, type[Robot]]) -> None:
    url, handler = robot
    body = summary_body(5000)
    body["centres"] = {f"某某区第{i}号政务服务中心分中心": 1 for i in range(400)}
    for kind in ("markdown", "text"):
        WeComSender().send(
            target("wecom", url, token="key-wecom", options={"msgtype": kind}), body, "s"
        )
    assert len(handler.received) == 2  # wecom_check refused none for length


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtpd() -> Iterator[tuple[int, Mailbox]]:
    box = Mailbox()
    with socket.socket() as probe:  # the Controller checks its port by connecting to it
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield port, box
    ctl.stop()


def mail_target(port: int, **kw: Any) -> Target:
    return Target(
        name="qingpu-mail",
        type="smtp",
        kinds=frozenset({"alert"}),
        smtp_host="127.0.0.1",
        smtp_port=port,
        mail_from="warmwindow@qingpu.example",
        mail_to=("manager@qingpu.example", "inspector@qingpu.example"),
        **kw,
    )


def test_the_mail_server_gets_a_utf8_mail_in_chinese(smtpd: tuple[int, Mailbox]) -> None:
    port, box = smtpd
    t = mail_target(port, smtp_starttls=False, options={"dashboard_url": "https://ww.example"})
    SmtpSender().send(t, alert_body(), "alert:x")
    SmtpSender().send(t, summary_body(), "alert-summary:y")
    assert [rcpt for rcpt, _ in box.mails] == [list(t.mail_to)] * 2
    mails = [message_from_bytes(raw, policy=email_policy) for _, raw in box.mails]
    first = mails[0]
    assert isinstance(first, EmailMessage)
    assert first["Subject"] == "【暖心窗口】差评 · 青浦区行政服务中心 w03（3号窗口）"
    part = first.get_body(("plain",))
    assert part is not None and part.get_content_charset() == "utf-8"
    text = part.get_content()
    assert "中心：青浦区行政服务中心" in text and "工作人员工号：S1042" in text
    assert "评价：非常不满意" in text and "查看：https://ww.example/#/cases/" in text
    assert mails[1]["Subject"] == "【暖心窗口】提醒汇总 196 条（提醒过多已合并）"
    # The same key, the same Message-ID: a repeated delivery is recognisably the same mail.
    again = SmtpSender().message(t, alert_body(), "alert:x")
    assert again["Message-ID"] == first["Message-ID"]


def test_smtp_refuses_to_send_in_clear_when_starttls_is_asked(
    smtpd: tuple[int, Mailbox],
) -> None:
    port, box = smtpd
    with pytest.raises(Permanent, match="STARTTLS"):
        SmtpSender().send(mail_target(port), alert_body(), "k")
    with pytest.raises(Retry, match="SMTP connection"):
        SmtpSender().send(mail_target(9, smtp_starttls=False), alert_body(), "k")
    assert box.mails == []
