#!/usr/bin/env python3
"""Write each NATS node's configuration for a city: TLS everywhere, certificate users, and
per-window permissions equivalent to Mosquitto's ACL (deploy/mosquitto/acl.py).

Usage::

    python deploy/city/nats_config.py --node nats1=10.20.0.11 --node nats2=10.20.0.12 \\
        --node nats3=10.20.0.13 --out /tmp/nats firmware_config/sites/*
    # -> /tmp/nats/nats1.conf ... one file per node; copy to /etc/nats-server/nats.conf

Identities are the client-certificate CNs of deploy/mosquitto/pki.py: ``<site>/<window>``
for a window, ``ww-server`` for the aggregator. NATS's ``verify_and_map`` matches a
certificate without e-mail or DNS names by its whole subject, so each user is named
``CN=<identity>,O=WarmWindow`` (the DN pki.py writes). A certificate from our CA whose CN is
not listed (issued by mistake, or a window removed from the site files) has no user and is
refused at CONNECT; there is no ``no_auth_user``.

NATS maps MQTT topic ``ww/v1/s/w/event`` to subject ``ww.v1.s.w.event``. What MQTT needs
beyond the topics (read in server/mqtt.go and client.go of v2.9.10, and tested in
tests/deploy/test_nats_permissions.py):

- a QoS 1 subscription is a JetStream consumer whose deliver subject ``$MQTT.sub.<nuid>``
  the MQTT client itself subscribes to, checked against its subscribe permissions; without
  ``$MQTT.sub.>`` every QoS 1 SUBSCRIBE fails. MQTT clients cannot subscribe to that prefix
  through an MQTT filter (the server refuses it), but a NATS-protocol connection could, and
  would read every terminal's QoS 1 deliveries: so window users get
  ``allowed_connection_types: ["MQTT"]``.
- sessions, retained messages and QoS 1 storage use the account's internal JetStream
  client, not the user's permissions: no ``$JS.API`` or ``$MQTT.JSA`` right is needed.

The aggregator's NATS connection (nats-py) runs a durable pull consumer ``ww-ingest`` on
stream ``WW_EVENTS`` (``ww.v1.*.*.event``, created if missing), so it may call exactly those
JetStream API subjects and acknowledge on ``$JS.ACK.WW_EVENTS.ww-ingest.>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.config import ConfigError, load_site

ROOT = "ww.v1"
DEVICE_WRITE = ("availability", "event", "state", "health", "reply")
DEVICE_READ = ("config", "settings", "cmd", "stored")
SERVER_READ = DEVICE_WRITE
SERVER_WRITE = DEVICE_READ
ACCEPTS = f"{ROOT}._server.accepts.*"
SERVER_IDENTITY = "ww-server"
ORG = "WarmWindow"
#: The JetStream deliver subjects of MQTT QoS 1 subscriptions (server/mqtt.go mqttSubPrefix).
MQTT_DELIVER = "$MQTT.sub.>"
STREAM = "WW_EVENTS"
CONSUMER = "ww-ingest"
#: A models bundle is a stored zip of the ONNX files, 1.2 MB today: over NATS's 1 MB
#: default. 8 MB is NATS's recommended ceiling; tests/deploy/test_nats_permissions.py pushes
#: the real bundle through a cluster with this limit and keeps it above the real size.
MAX_PAYLOAD = 8 * 1024 * 1024

Version = tuple[int, int, int]

#: MQTT-side advisories of nats-server a deployment must weigh: the first fixed release of
#: each release line, and what the advisory means for this configuration (the behaviour
#: of 2.9.10 under it is tested in tests/deploy/test_nats_permissions.py).
ADVISORIES: tuple[tuple[tuple[Version, ...], str], ...] = (
    (
        ((2, 11, 15), (2, 12, 6)),
        "CVE-2026-33217 (GHSA-jxxm-27vp-c3m5), ACLs not applied in the $MQTT.> namespace: "
        "windows here may use MQTT only and their publishes into $MQTT.* are refused "
        "(tested on 2.9.10), but only the fix is a guarantee",
    ),
    (
        ((2, 11, 15), (2, 12, 6)),
        "CVE-2026-33215 (GHSA-fcjp-h8cc-6879), sessions hijacked through an MQTT client id: "
        "here a window using another's client id knocks it off but reads none of its "
        "messages (tested on 2.9.10): a denial of service by a certificate holder",
    ),
    (
        ((2, 12, 12), (2, 14, 3)),
        "CVE-2026-58214 (GHSA-4g68-3pwx-5vfj) and BIT-nats-2026-58209, subscribe ACL "
        "bypass via $MQTT.deliver.pubrel and retained/QoS 1 replay past deny rules: this "
        "configuration has allow lists only, and windows' $MQTT/... filters are refused "
        "(tested on 2.9.10)",
    ),
    (
        ((2, 12, 12), (2, 14, 3)),
        "BIT-nats-2026-58210, partial MQTT CONNECT packets exhaust memory before "
        "authentication: TLS with a client certificate comes first here, so only a "
        "certificate holder reaches the MQTT parser",
    ),
)


@dataclass(frozen=True)
class Node:
    """One cluster member and the ports it listens on."""

    name: str
    host: str
    client_port: int = 4222
    mqtt_port: int = 8883
    cluster_port: int = 6222
    http_port: int = 8222


@dataclass(frozen=True)
class Files:
    """Where the node finds its TLS files (``pki.py node <name>`` writes them: one key for
    clients and routes, its certificate with serverAuth and clientAuth) and keeps its
    JetStream store."""

    ca: str = "/etc/nats-server/tls/ca.crt"
    cert: str = "/etc/nats-server/tls/node.crt"
    key: str = "/etc/nats-server/tls/node.key"
    store_dir: str = "/var/lib/nats-server/jetstream"


def user_dn(identity: str) -> str:
    """The subject DN pki.py writes for ``identity``, as verify_and_map compares it."""
    return f"CN={identity},O={ORG}"


def window_permissions(site: str, window: str) -> dict[str, object]:
    own = f"{ROOT}.{site}.{window}"
    return {
        "publish": {"allow": [f"{own}.{ch}" for ch in DEVICE_WRITE]},
        "subscribe": {"allow": [*(f"{own}.{ch}" for ch in DEVICE_READ), ACCEPTS, MQTT_DELIVER]},
    }


def server_permissions(stream: str = STREAM, consumer: str = CONSUMER) -> dict[str, object]:
    api = "$JS.API"
    js = [
        f"{api}.INFO",
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.STREAM.CREATE.{stream}",
        f"{api}.CONSUMER.INFO.{stream}.{consumer}",
        # nats-py on a >= 2.9 server names the consumer (and its filter) in the subject.
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]
    return {
        "publish": {
            "allow": [*(f"{ROOT}.*.*.{ch}" for ch in SERVER_WRITE), ACCEPTS, *js],
        },
        "subscribe": {
            "allow": [*(f"{ROOT}.*.*.{ch}" for ch in SERVER_READ), MQTT_DELIVER, "_INBOX.>"],
        },
    }


def users(
    windows: Iterable[tuple[str, str]], *, server_identities: Sequence[str] = (SERVER_IDENTITY,)
) -> list[dict[str, object]]:
    """Every user of the city: one per aggregator identity, one per registered window."""
    out: list[dict[str, object]] = [
        {
            "user": user_dn(identity),
            "permissions": server_permissions(),
            "allowed_connection_types": ["STANDARD", "MQTT"],
        }
        for identity in server_identities
    ]
    seen: set[tuple[str, str]] = set()
    for site, window in windows:
        if (site, window) in seen:
            raise ValueError(f"window {site}/{window} listed twice")
        seen.add((site, window))
        out.append(
            {
                "user": user_dn(f"{site}/{window}"),
                "permissions": window_permissions(site, window),
                "allowed_connection_types": ["MQTT"],
            }
        )
    return out


def parse_version(text: str) -> Version:
    """``nats-server: v2.9.10`` (or ``2.9.10``) -> (2, 9, 10)."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if m is None:
        raise ValueError(f"no version in {text!r}")
    return int(m[1]), int(m[2]), int(m[3])


def affected(version: Version, fixed: Sequence[Version]) -> bool:
    """Whether ``version`` predates the fix: the first fixed release of its own line, or of
    the next line that has one (a line newer than every fixed one is not affected)."""
    later = [f for f in sorted(fixed) if f[:2] >= version[:2]]
    return bool(later) and version < later[0]


def advisories(version: Version) -> list[str]:
    """The known MQTT advisories that ``version`` is not fixed for."""
    return [what for fixed, what in ADVISORIES if affected(version, fixed)]


def installed_version(binary: str = "nats-server") -> Version | None:
    path = shutil.which(binary) or ("/usr/sbin/nats-server" if binary == "nats-server" else None)
    if path is None or not Path(path).exists():
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    return parse_version(out.stdout + out.stderr)


def pinned_keys(pki_root: Path) -> list[str]:
    """sha256 of the SubjectPublicKeyInfo of every client certificate ``pki.py`` issued
    and has not revoked (``crl.pem``): NATS 2.9 reads no CRL, so ``pinned_certs`` is how
    a revoked terminal is refused while its replacement (a new key, same name) is let in."""
    revoked: set[int] = set()
    crl_path = pki_root / "crl.pem"
    if crl_path.exists():
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
        revoked = {r.serial_number for r in crl}
    keys = []
    for crt in sorted((pki_root / "clients").glob("*/window.crt")):
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        if cert.serial_number in revoked:
            continue
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keys.append(hashlib.sha256(spki).hexdigest())
    if not keys:
        raise ValueError(f"{pki_root}: no client certificates under clients/")
    return keys


def _tls(cert: str, key: str, ca: str, *, verify_and_map: bool, pinned: Sequence[str] = ()) -> str:
    mode = "verify_and_map: true" if verify_and_map else "verify: true"
    pins = f", pinned_certs: {json.dumps(list(pinned))}" if pinned else ""
    return (
        f'tls {{ cert_file: "{cert}", key_file: "{key}", ca_file: "{ca}", {mode}, timeout: 5'
        f"{pins} }}"
    )


def render_node(
    node: Node,
    nodes: Sequence[Node],
    windows: Iterable[tuple[str, str]],
    *,
    files: Files = Files(),
    cluster: str = "ww-city",
    max_payload: int = MAX_PAYLOAD,
    server_identities: Sequence[str] = (SERVER_IDENTITY,),
    stream_replicas: int = 3,
    pinned: Sequence[str] = (),
) -> str:
    """One node's nats-server configuration (JSON is valid NATS config syntax).
    ``pinned``: the client keys let in (``pinned_keys``); empty lets in every certificate
    of the CA that maps to a user."""
    tls = _tls(files.cert, files.key, files.ca, verify_and_map=True, pinned=pinned)
    route_tls = _tls(files.cert, files.key, files.ca, verify_and_map=False)
    routes = ", ".join(f'"nats-route://{n.host}:{n.cluster_port}"' for n in nodes if n != node)
    lines = [
        "# WarmWindow city NATS node, written by deploy/city/nats_config.py: do not edit.",
        f"server_name: {json.dumps(node.name)}",
        f'listen: "{node.host}:{node.client_port}"',
        f'http: "{node.host}:{node.http_port}"',
        f"max_payload: {max_payload}",
        # Every NATS-protocol client presents a certificate mapped to a user below.
        tls,
        f'jetstream {{ store_dir: "{files.store_dir}" }}',
        # Routes: mutual TLS with the node's own certificate (serverAuth + clientAuth).
        f'cluster {{ name: {json.dumps(cluster)}, listen: "{node.host}:{node.cluster_port}",'
        f" routes: [{routes}], {route_tls} }}",
        # Terminals: MQTT 3.1.1 over TLS with the same certificate users.
        f'mqtt {{ listen: "{node.host}:{node.mqtt_port}", stream_replicas: {stream_replicas},',
        f"  {tls} }}",
        "authorization {",
        "  users: "
        + json.dumps(users(windows, server_identities=server_identities), indent=2).replace(
            "\n", "\n  "
        ),
        "}",
        "",
    ]
    return "\n".join(lines)


def site_windows(site_dir: Path) -> list[tuple[str, str]]:
    """(site, window) of a site directory, validated by the agent's own loader."""
    site = load_site(site_dir)
    return [(site.site.site, w.window) for w in site.windows]


def parse_node(spec: str) -> Node:
    """``name=host`` or ``name=host:client:mqtt:cluster:http``."""
    name, _, rest = spec.partition("=")
    if not name or not rest:
        raise ValueError(f"bad --node {spec!r}: use name=host[:client:mqtt:cluster:http]")
    host, *ports = rest.split(":")
    if ports and len(ports) != 4:
        raise ValueError(f"bad --node {spec!r}: give all four ports or none")
    return Node(name, host, *(int(p) for p in ports)) if ports else Node(name, host)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("sites", nargs="+", type=Path, help="site directories")
    p.add_argument("--node", action="append", required=True, help="name=host[:ports] (repeat)")
    p.add_argument("--server", action="append", default=None, help="aggregator identity")
    p.add_argument("--max-payload", type=int, default=MAX_PAYLOAD)
    p.add_argument("--cluster", default="ww-city")
    p.add_argument(
        "--pki",
        type=Path,
        default=None,
        help="pki.py directory: pin every issued, unrevoked client key (how revocation works)",
    )
    p.add_argument(
        "--engine-version",
        default=None,
        help="the nodes' nats-server version (default: the one installed here, if any)",
    )
    p.add_argument("--out", type=Path, required=True, help="directory for <node>.conf")
    args = p.parse_args(argv)
    try:
        nodes = [parse_node(s) for s in args.node]
        windows = [w for s in args.sites for w in site_windows(s)]
        pinned = pinned_keys(args.pki) if args.pki else []
        if not pinned:
            print(
                "nats_config: no --pki: a revoked certificate is still let in (NATS reads no CRL); "
                "remove its window from the site files or pass --pki",
                file=sys.stderr,
            )
        version = parse_version(args.engine_version) if args.engine_version else installed_version()
        for what in advisories(version) if version else []:
            v = ".".join(map(str, version or ()))
            print(f"nats_config: warning: nats-server {v} is affected by {what}", file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        for node in nodes:
            text = render_node(
                node,
                nodes,
                windows,
                cluster=args.cluster,
                max_payload=args.max_payload,
                server_identities=args.server or [SERVER_IDENTITY],
                pinned=pinned,
            )
            (args.out / f"{node.name}.conf").write_text(text, encoding="utf-8")
    except (OSError, ValueError, ConfigError) as exc:
        print(f"nats_config: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
