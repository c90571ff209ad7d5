"""The alert channels: a WeCom group robot, a DingTalk custom robot, and e-mail (SMTP).

Each is a ``Sender`` of the outbound queue (``server/outbound/queue.py``): it takes the
body ``server/outbound/alerts.py`` queued (an alert or a summary, as data) and tells it
in Chinese in that channel's documented format, raising ``Retry`` or ``Permanent``.
What a message says: the centre's name, the window, the clerk by staff id (never a face
or an image: the body has none to give), the kind in words, when, and a link to the
dashboard page when the target's ``options.dashboard_url`` is set.

* WeCom (企业微信群机器人): ``POST <url>?key=<token>`` with
  ``{"msgtype": "markdown", "markdown": {"content": ...}}`` (or ``"text"``, ``text.content``);
  content at most 4096 bytes of UTF-8 (text 2048). It answers HTTP 200 with ``errcode``.
* DingTalk (钉钉自定义机器人) with the 加签 security setting: ``POST
  <url>?access_token=<token>&timestamp=<ms>&sign=<sign>``, ``sign`` =
  urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))) — DingTalk
  refuses a timestamp more than an hour from its clock; body
  ``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}`` or ``"text"``.
* SMTP: ``smtplib`` with STARTTLS (the default; a server that does not offer it is
  refused rather than sent to in clear), a login when ``smtp_user`` is set (the
  password is the target's secret); subject and body UTF-8; the Message-ID comes from
  the queue key, so a repeated delivery is recognisably the same mail.

The token (``key`` / ``access_token``) and secret come from the target's files; they
are added to the URL only here, at send time, and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Final
from zoneinfo import ZoneInfo

from server.outbound.http_json import classify
from server.outbound.queue import Permanent, Retry, Sender
from server.outbound.targets import Target

#: The alert kinds in words (as the dashboard names them, server/web/static/i18n.js).
KIND_WORDS: Final[dict[str, str]] = {
    "bad_review": "差评",
    "away_without_sign": "无牌离岗",
    "offline": "终端离线",
    "terminal_silent": "终端失联",
    "fault": "终端故障",
    "not_observed": "摄像头视角或光线",
    "case_overdue": "差评整改逾期",
    "conduct": "未起立/未微笑",
    "sign_while_present": "在岗挂牌",
}
FAULT_WORDS: Final[dict[str, str]] = {
    "camera_dead": "摄像头无画面",
    "camera_frozen": "摄像头画面冻结",
    "model_error": "识别模型出错",
    "outbox_full": "终端缓存已满",
    "gpio_error": "按键或传感器故障",
}
RATING_WORDS: Final[dict[str, str]] = {
    "very_satisfied": "非常满意",
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
    "very_dissatisfied": "非常不满意",
}
TITLE: Final = "【暖心窗口】"
#: Alerts a summary lists one by one; the rest it counts.
SUMMARY_LISTED: Final = 10
WECOM_LIMITS: Final = {"markdown": 4096, "text": 2048}
#: WeCom 45009 / DingTalk 130101: sent too fast; -1: busy. Any other errcode is final.
RETRY_ERRCODES: Final = frozenset({-1, 45009, 130101})


# ------------------------------------------------------------------------ the words


def _when(ms: int, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime(fmt)


def _window(a: Mapping[str, Any]) -> str:
    label = a.get("window_label")
    return f"{a['window']}（{label}）" if label and label != a["window"] else str(a["window"])


def _what(a: Mapping[str, Any], tz: str) -> str:
    """The kind's own facts, in words."""
    d: Mapping[str, Any] = a.get("detail") or {}
    kind = a["kind"]
    if kind == "bad_review" and d.get("rating"):
        return f"评价：{RATING_WORDS.get(d['rating'], '差评')}"
    if kind == "fault":
        return f"故障：{FAULT_WORDS.get(str(d.get('code')), '终端故障')}"
    if kind == "away_without_sign" and d.get("started_ms") and d.get("ended_ms"):
        minutes = max(1, round((int(d["ended_ms"]) - int(d["started_ms"])) / 60_000))
        return f"离岗约 {minutes} 分钟，未放置“请稍候”牌"
    if kind == "case_overdue" and d.get("due_ms"):
        return f"整改期限：{_when(int(d['due_ms']), tz)}，仍未办结"
    if kind == "terminal_silent" and d.get("last_heard_ms"):
        return f"最后联系：{_when(int(d['last_heard_ms']), tz)}"
    if kind == "not_observed" and d.get("sessions"):
        return (
            f"{d.get('not_observed', 0)}/{d['sessions']} 次服务未能看清（请检查摄像头位置或光线）"
        )
    return ""


def link(body: Mapping[str, Any], base: str | None) -> str | None:
    """The dashboard page of a message: the case, the window, or the alerts list."""
    if not base:
        return None
    root = base.rstrip("/") + "/#/"
    if body["type"] == "summary":
        return root + "alerts"
    a = body["alerts"][0]
    q = urllib.parse.quote
    if a["kind"] == "bad_review":
        return root + "cases/" + q(str(a["alert_id"]), safe="")
    if a["kind"] == "case_overdue" and (a.get("detail") or {}).get("case_id"):
        return root + "cases/" + q(str(a["detail"]["case_id"]), safe="")
    return root + "window/" + q(str(a["site"]), safe="") + "/" + q(str(a["window"]), safe="")


def subject(body: Mapping[str, Any]) -> str:
    if body["type"] == "summary":
        why = "静默时段暂存" if body.get("reason") == "quiet" else "提醒过多已合并"
        return f"{TITLE}提醒汇总 {body['count']} 条（{why}）"
    a = body["alerts"][0]
    return f"{TITLE}{KIND_WORDS.get(a['kind'], a['kind'])} · {a['centre']} {_window(a)}"


def lines(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The message as (label, value) lines after its subject; a label "" is prose."""
    tz = str(body.get("tz") or "Asia/Shanghai")
    if body["type"] == "alert":
        a = body["alerts"][0]
        out = [
            ("中心", str(a["centre"])),
            ("窗口", _window(a)),
            ("时间", _when(int(a["ts_ms"]), tz)),
        ]
        if a.get("clerk_id"):
            out.append(("工作人员工号", str(a["clerk_id"])))
        what = _what(a, tz)
        if what:
            out.append(("情况", what))
        if body["count"] > 1:
            out.append(("", f"同一窗口同类提醒共 {body['count']} 条"))
        return out
    span = f"{_when(body['first_ms'], tz)} 至 {_when(body['last_ms'], tz, '%H:%M')}"
    kinds = "，".join(f"{KIND_WORDS.get(k, k)} {n}" for k, n in body["counts"].items())
    centres = "，".join(f"{c} {n}" for c, n in body["centres"].items())
    out = [("时段", span), ("按类型", kinds), ("按中心", centres)]
    for a in body["alerts"]:
        who = f"，工号 {a['clerk_id']}" if a.get("clerk_id") else ""
        out.append(
            (
                "",
                f"{_when(int(a['ts_ms']), tz, '%H:%M')} {a['centre']} {_window(a)} "
                f"{KIND_WORDS.get(a['kind'], a['kind'])}{who}",
            )
        )
    rest = body["count"] - len(body["alerts"])
    if rest > 0:
        out.append(("", f"其余 {rest} 条请在看板查看"))
    return out


def as_text(body: Mapping[str, Any], base: str | None) -> str:
    out = [subject(body)]
    out += [f"{k}：{v}" if k else v for k, v in lines(body)]
    url = link(body, base)
    if url:
        out.append(f"查看：{url}")
    return "\n".join(out)


def as_markdown(body: Mapping[str, Any], base: str | None) -> str:
    warn = body["type"] == "summary" or body["alerts"][0]["kind"] in ("bad_review", "case_overdue")
    head = f'<font color="warning">{subject(body)}</font>' if warn else subject(body)
    out = [f"### {head}"]
    out += [f"> **{k}**：{v}" if k else f"> {v}" for k, v in lines(body)]
    url = link(body, base)
    if url:
        out.append(f"[在看板中查看]({url})")
    return "\n".join(out)


def _fit(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, cut at a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


# ------------------------------------------------------------------------ the wire


def _with_query(url: str, params: Mapping[str, str]) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + urllib.parse.urlencode(params)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx surfaces as an HTTPError: Permanent


#: No proxy from the environment, no redirects: only the configured host is ever asked.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def post_json(url: str, payload: Mapping[str, Any], timeout_s: float) -> Mapping[str, Any]:
    """POST JSON; the answer's JSON. Retry on time-outs, 408, 429, 5xx and dropped
    connections; Permanent on other statuses and on an answer that is not JSON."""
    req = urllib.request.Request(
        url,
        data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json; charset=utf-8"},
        method="POST",
    )
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        outcome = classify(exc.code) or Permanent
        raise outcome(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Retry(f"connection: {type(reason).__name__}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise Permanent("the robot's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise Permanent("the robot's answer is not a JSON object")
    return answer


def _robot_outcome(answer: Mapping[str, Any]) -> None:
    code = answer.get("errcode", 0)
    if code == 0:
        return
    msg = str(answer.get("errmsg", ""))[:200]
    if code in RETRY_ERRCODES:
        raise Retry(f"errcode {code}: {msg}")
    raise Permanent(f"errcode {code}: {msg}")


def _msgtype(target: Target) -> str:
    return "text" if target.options.get("msgtype") == "text" else "markdown"


def _base(target: Target) -> str | None:
    base = target.options.get("dashboard_url")
    return str(base) if base else None


class WeComSender:
    """A WeCom group robot (企业微信群机器人)."""

    def payload(self, target: Target, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = _msgtype(target)
        render = as_text if kind == "text" else as_markdown
        content = _fit(render(body, _base(target)), WECOM_LIMITS[kind])
        return {"msgtype": kind, kind: {"content": content}}

    def send(self, target: Target, body: Mapping[str, Any], key: str) -> None:
        url = target.url or ""
        if target.token:
            url = _with_query(url, {"key": target.token})
        _robot_outcome(post_json(url, self.payload(target, body), target.timeout_s))


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """The 加签 signature, as DingTalk's documentation computes it (URL-encoded)."""
    msg = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), msg, digestmod=hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


class DingTalkSender:
    """A DingTalk custom robot (钉钉自定义机器人), signed when the target has a secret."""

    def __init__(self, clock: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._clock = clock

    def payload(self, target: Target, body: Mapping[str, Any]) -> dict[str, Any]:
        base = _base(target)
        if _msgtype(target) == "text":
            return {"msgtype": "text", "text": {"content": as_text(body, base)}}
        return {
            "msgtype": "markdown",
            "markdown": {"title": subject(body), "text": as_markdown(body, base)},
        }

    def url(self, target: Target) -> str:
        url = target.url or ""
        if target.token:
            url = _with_query(url, {"access_token": target.token})
        if target.secret:
            ts = self._clock()
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            # dingtalk_sign is already URL-encoded: appended as it is, not encoded twice.
            url += f"{sep}timestamp={ts}&sign={dingtalk_sign(ts, target.secret)}"
        return url

    def send(self, target: Target, body: Mapping[str, Any], key: str) -> None:
        _robot_outcome(post_json(self.url(target), self.payload(target, body), target.timeout_s))


class SmtpSender:
    """E-mail through the target's SMTP server (``smtplib``)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls

    def message(self, target: Target, body: Mapping[str, Any], key: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject(body)
        msg["From"] = target.mail_from or ""
        msg["To"] = ", ".join(target.mail_to)
        digest = hashlib.sha256(f"{target.name}/{key}".encode()).hexdigest()[:32]
        msg["Message-ID"] = f"<{digest}@warmwindow>"
        msg.set_content(as_text(body, _base(target)), charset="utf-8")
        return msg

    def send(self, target: Target, body: Mapping[str, Any], key: str) -> None:
        msg = self.message(target, body, key)
        try:
            with smtplib.SMTP(
                target.smtp_host or "", target.smtp_port, timeout=target.timeout_s
            ) as s:
                s.ehlo()
                if target.smtp_starttls:
                    if not s.has_extn("starttls"):
                        raise Permanent("the SMTP server does not offer STARTTLS")
                    s.starttls(context=self._tls or ssl.create_default_context())
                    s.ehlo()
                if target.smtp_user:
                    s.login(target.smtp_user, target.secret or "")
                s.send_message(msg)
        except smtplib.SMTPRecipientsRefused:
            raise Permanent("every recipient refused") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise Permanent(f"SMTP login refused ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise Retry(f"SMTP {exc.smtp_code}") from None
            raise Permanent(f"SMTP {exc.smtp_code}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise Permanent(f"SMTP: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise Retry(f"SMTP connection: {type(exc).__name__}") from None


def senders(clock: Callable[[], int] | None = None) -> dict[str, Sender]:
    """The alert channels by target type, for the ``Deliverer``."""
    ding = DingTalkSender(clock) if clock is not None else DingTalkSender()
    return {"wecom": WeComSender(), "dingtalk": ding, "smtp": SmtpSender()}
