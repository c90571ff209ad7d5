"""Outbound targets: where the server may send anything, read from one TOML file.

The file is named by ``WW_OUTBOUND_FILE`` (server/settings.py); without it every
outbound link is off. It is the *only* place a destination comes from: no request body,
query or stored row ever names a URL or a host, so the API cannot be turned into a
request forger (SSRF). A district admin may switch a configured target off and on for
its units (``server/api/outbound.py``), never point it elsewhere.

Validated at start, every problem naming the file and the field
(``outbound.toml: target[1].url: host 'evil.example' is not in allow_hosts``):

* ``url`` is ``https``; plain ``http`` only to a loopback host (a receiver on the same
  machine, the tests');
* its host is in the file's ``allow_hosts`` (exact names or addresses; no wildcards);
* no credentials in the URL (neither ``user:pass@`` nor a ``key=`` / ``access_token=``
  style query): secrets live in files named by ``secret_file`` / ``token_file`` and are
  never logged or shown (``repr=False``).

Example (docs/outbound.md has the full format)::

    allow_hosts = ["hcp.sh.gov.cn"]

    [[target]]
    name = "province"
    type = "http"
    url = "https://hcp.sh.gov.cn/api/v1/evaluations"
    secret_file = "/etc/warmwindow/province.token"
    kinds = ["evaluation"]
    districts = ["青浦区"]
"""

from __future__ import annotations

import functools
import ipaddress
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TargetType = Literal["http", "wecom", "dingtalk", "smtp"]
#: Query parameters that carry a credential; they belong in ``token_file``.
SECRET_PARAMS = frozenset({"key", "access_token", "token", "secret", "password", "sign"})


class OutboundConfigError(ValueError):
    """One or more problems of the outbound file, each as 'file: field: reason'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _TargetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$", description="Stable id.")
    type: TargetType = Field(description="Which sender delivers to it.")
    url: str | None = Field(None, description="Webhook or HTTP endpoint (not for smtp).")
    smtp_host: str | None = Field(None, description="SMTP server (smtp only).")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_user: str | None = Field(None, description="SMTP login; the password is secret_file.")
    mail_from: str | None = Field(None, description="Sender address (smtp only).")
    mail_to: list[str] = Field(default_factory=list, description="Recipients (smtp only).")
    secret_file: Path | None = Field(
        None, description="File with the secret: bearer token, signing secret or password."
    )
    token_file: Path | None = Field(
        None, description="File with a webhook's key / access token (added to the URL)."
    )
    sites: list[str] = Field(default_factory=list, description="Sites served; [] = all.")
    districts: list[str] = Field(default_factory=list, description="Districts served.")
    kinds: list[str] = Field(description="What it takes: evaluation, alert, ...")
    enabled: bool = Field(True, description="False keeps it configured but silent.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Per request.")
    max_attempts: int = Field(12, ge=1, le=100, description="Then the delivery is dead.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="The channel's own settings (msgtype, quiet hours)."
    )


class _OutboundFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_hosts: list[str] = Field(description="The only hosts a target may name.")
    target: list[_TargetFile] = Field(default_factory=list, description="The targets.")
    backoff_s: float = Field(2.0, gt=0, le=600, description="First retry delay.")
    backoff_cap_s: float = Field(600.0, gt=0, le=86_400, description="Longest retry delay.")
    poll_s: float = Field(1.0, gt=0, le=60, description="How often the queue is looked at.")
    lease_s: float = Field(
        60.0, gt=0, le=3600, description="How long a claimed delivery is a replica's own."
    )


@dataclass(frozen=True)
class Target:
    """One configured destination. ``secret`` and ``token`` are read from their files
    at start and never appear in ``repr``, logs or API answers."""

    name: str
    type: TargetType
    kinds: frozenset[str]
    url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str | None = None
    mail_from: str | None = None
    mail_to: tuple[str, ...] = ()
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    sites: frozenset[str] = frozenset()
    districts: frozenset[str] = frozenset()
    enabled: bool = True
    timeout_s: float = 10.0
    max_attempts: int = 12
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def serves(self, site: str, district: str | None) -> bool:
        """Whether this target takes the unit's traffic (no sites and no districts: all)."""
        if not self.sites and not self.districts:
            return True
        return site in self.sites or (district is not None and district in self.districts)

    def takes(self, kind: str) -> bool:
        return self.enabled and kind in self.kinds

    @property
    def host(self) -> str:
        if self.type == "smtp":
            return self.smtp_host or ""
        return urlsplit(self.url or "").hostname or ""


@dataclass(frozen=True)
class OutboundConfig:
    """The validated file: the targets by name and the queue's timing."""

    path: Path | None
    targets: dict[str, Target]
    allow_hosts: frozenset[str] = frozenset()
    backoff_s: float = 2.0
    backoff_cap_s: float = 600.0
    poll_s: float = 1.0
    lease_s: float = 60.0

    def taking(self, kind: str) -> list[Target]:
        return [t for t in self.targets.values() if t.takes(kind)]


#: No file: nothing is sent, nothing is enqueued.
OFF = OutboundConfig(path=None, targets={})


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _url_problems(url: str, allow: frozenset[str]) -> Iterable[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        yield f"{url!r} is not an http(s) URL with a host"
        return
    if parts.scheme == "http" and not is_loopback(host):
        yield f"scheme http is allowed only to a loopback host, not {host!r}; use https"
    if parts.username is not None or parts.password is not None:
        yield "credentials in the URL; put them in secret_file"
    secrets = sorted({k for k, _ in parse_qsl(parts.query)} & SECRET_PARAMS)
    if secrets:
        yield f"credential in the URL's query ({', '.join(secrets)}); put it in token_file"
    if host.lower() not in allow:
        yield f"host {host!r} is not in allow_hosts"


def _read_secret(path: Path | None, where: str, problems: list[str]) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"{where}: cannot read ({exc.strerror})")
        return None


def check(path: Path, data: dict[str, Any]) -> OutboundConfig:
    """Validate a parsed outbound file; raise ``OutboundConfigError`` naming every field."""
    try:
        raw = _OutboundFile.model_validate(data)
    except ValidationError as exc:
        raise OutboundConfigError(
            [f"{path}: {_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from None
    problems: list[str] = []
    allow = frozenset(h.lower() for h in raw.allow_hosts)
    targets: dict[str, Target] = {}
    for i, t in enumerate(raw.target):
        where = f"{path}: target[{i}]"
        if t.name in targets:
            problems.append(f"{where}.name: {t.name!r} is used twice")
        if t.type == "smtp":
            if not t.smtp_host:
                problems.append(f"{where}.smtp_host: an smtp target needs its server")
            elif t.smtp_host.lower() not in allow:
                problems.append(f"{where}.smtp_host: host {t.smtp_host!r} is not in allow_hosts")
            if t.url is not None:
                problems.append(f"{where}.url: an smtp target has no url")
            if not t.mail_from or not t.mail_to:
                problems.append(f"{where}.mail_to: an smtp target needs mail_from and mail_to")
        elif t.url is None:
            problems.append(f"{where}.url: a {t.type} target needs its url")
        else:
            problems.extend(f"{where}.url: {p}" for p in _url_problems(t.url, allow))
        secret = _read_secret(t.secret_file, f"{where}.secret_file", problems)
        token = _read_secret(t.token_file, f"{where}.token_file", problems)
        targets[t.name] = Target(
            name=t.name,
            type=t.type,
            kinds=frozenset(t.kinds),
            url=t.url,
            smtp_host=t.smtp_host,
            smtp_port=t.smtp_port,
            smtp_starttls=t.smtp_starttls,
            smtp_user=t.smtp_user,
            mail_from=t.mail_from,
            mail_to=tuple(t.mail_to),
            secret=secret,
            token=token,
            sites=frozenset(t.sites),
            districts=frozenset(t.districts),
            enabled=t.enabled,
            timeout_s=t.timeout_s,
            max_attempts=t.max_attempts,
            options=dict(t.options),
        )
    if raw.backoff_cap_s < raw.backoff_s:
        problems.append(f"{path}: backoff_cap_s: smaller than backoff_s")
    if problems:
        raise OutboundConfigError(problems)
    return OutboundConfig(
        path=path,
        targets=targets,
        allow_hosts=allow,
        backoff_s=raw.backoff_s,
        backoff_cap_s=raw.backoff_cap_s,
        poll_s=raw.poll_s,
        lease_s=raw.lease_s,
    )


@functools.cache
def load_cached(path: Path | None) -> OutboundConfig:
    """``load`` once per path (the file is read at start; a change needs a restart)."""
    return load(path)


def load(path: Path | None) -> OutboundConfig:
    """The outbound file at ``path`` validated, or ``OFF`` when there is none."""
    if path is None:
        return OFF
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutboundConfigError([f"{path}: (file): missing"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OutboundConfigError([f"{path}: (file): not valid TOML: {exc}"]) from None
    return check(path, data)
