"""Build, sign and push update bundles (the server side of ``agent/update.py``).

The signing key is Ed25519, kept on the server (``/etc/warmwindow/bundle-signing.key``,
mode 0600, never in the repository); terminals hold only the public key. A bundle is
pushed as the retained message on a window's ``config`` topic: a terminal that was off
or has just been replaced receives it on its next connection, and pushing a newer
bundle replaces it. The broker ACL lets only the server identity write ``config``.

Example::

    warmwindow bundle keygen /etc/warmwindow/bundle-signing.key     # once; .pub beside it
    warmwindow bundle build --key /etc/warmwindow/bundle-signing.key --serial 7 \\
        --version fd1-smile-cf87e06a --from-dir models -o models-7.zip
    warmwindow bundle push models-7.zip --site qingpu --window w03 \\
        --host mqtt.qingpu.example --port 8883 --ca ca.crt --cert server.crt --key server.key
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle import (
    FILES,
    MANIFEST,
    SIGNATURE,
    FileEntry,
    Manifest,
    manifest_bytes,
    sha256_hex,
)
from agent.config import TlsConfig
from agent.mqtt import make_client
from agent.protocol import CHANNEL_QOS, Channel, topic

#: Files of the models package that make up a model bundle.
MODEL_FILES = ("face_detector.onnx", "smile.onnx", "manifest.json")


def generate_key(private_path: Path) -> Path:
    """Write a new Ed25519 key (PEM, mode 0600) and its public half beside it (``.pub``)."""
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    pub = private_path.with_suffix(".pub")
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pub


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def build_bundle(
    files: Mapping[str, bytes],
    *,
    version: str,
    serial: int,
    key: Ed25519PrivateKey,
    targets: Sequence[str] = (),
    created_ms: int | None = None,
    kind: Literal["models", "settings"] = "models",
) -> bytes:
    """A signed bundle of ``files`` (release-relative path -> content)."""
    manifest = Manifest(
        kind=kind,
        version=version,
        serial=serial,
        created_ms=created_ms if created_ms is not None else time.time_ns() // 1_000_000,
        targets=tuple(targets),
        files=tuple(
            FileEntry(path=path, sha256=sha256_hex(data), size=len(data))
            for path, data in sorted(files.items())
        ),
    )
    signed = manifest_bytes(manifest)
    out = io.BytesIO()
    # Stored, not deflated: ONNX weights barely compress, and a Pi unpacks faster.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, signed)
        zf.writestr(SIGNATURE, key.sign(signed))
        for path, data in sorted(files.items()):
            zf.writestr(FILES + path, data)
    return out.getvalue()


def model_files(model_dir: Path) -> dict[str, bytes]:
    """The model bundle's files from a models directory (the package or a build output)."""
    missing = [n for n in MODEL_FILES if not (model_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{model_dir}: missing {', '.join(missing)}")
    return {n: (model_dir / n).read_bytes() for n in MODEL_FILES}


def model_version(model_dir: Path) -> str:
    data: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    return str(data.get("version", "unknown"))


def push_bundle(
    data: bytes,
    site: str,
    window: str,
    *,
    host: str,
    port: int,
    tls: TlsConfig | None = None,
    client_id: str | None = None,
    timeout_s: float = 30.0,
    channel: Channel = Channel.CONFIG,
    protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
) -> None:
    """Publish ``data`` as the retained ``config`` (models) or ``settings`` of one window;
    raise unless the broker acknowledged it (an MQTT 5 PUBACK error, e.g. not authorised,
    raises too). ``protocol=MQTTv311`` for an engine that speaks only 3.1.1 (a NATS
    cluster), where a refused publish cannot be told from the PUBACK."""
    client = make_client(
        client_id or f"ww-bundle-{uuid.uuid4().hex[:8]}", tls=tls, protocol=protocol
    )
    outcome: dict[str, Any] = {}
    client.on_connect = lambda _c, _u, _f, rc, _p: outcome.setdefault("connack", rc)
    client.on_publish = lambda _c, _u, mid, rc, _p: outcome.setdefault("puback", rc)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while "connack" not in outcome and time.monotonic() < deadline:
            time.sleep(0.02)
        if "connack" not in outcome or outcome["connack"].is_failure:
            raise ConnectionError(f"broker refused us: {outcome.get('connack', 'no CONNACK')}")
        qos, retain = CHANNEL_QOS[channel]
        info = client.publish(topic(site, window, channel), data, qos=qos, retain=retain)
        while "puback" not in outcome and time.monotonic() < deadline:
            time.sleep(0.02)
        if "puback" not in outcome:
            raise TimeoutError(f"no PUBACK for the bundle (rc {info.rc})")
        if outcome["puback"].is_failure:
            raise PermissionError(f"broker refused the bundle: {outcome['puback']}")
    finally:
        client.disconnect()
        client.loop_stop()


# --------------------------------------------------------------------------- CLI


def _keygen(args: argparse.Namespace) -> int:
    print(generate_key(args.path))
    return 0


def _build(args: argparse.Namespace) -> int:
    files = model_files(args.from_dir)
    for spec in args.add or []:
        rel, _, src = spec.partition("=")
        files[rel] = Path(src).read_bytes()
    data = build_bundle(
        files,
        version=args.version or model_version(args.from_dir),
        serial=args.serial,
        key=load_private_key(args.key),
        targets=args.target or (),
    )
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data)} bytes, serial {args.serial}")
    return 0


def _push(args: argparse.Namespace) -> int:
    """Publish to each window; every push is on the audit record of the aggregator's
    store (who, which bundle by hash, which window), written before the next one."""
    import getpass
    import hashlib

    from server.accounts import Accounts
    from server.store.db import Store

    tls = None
    if args.ca:
        tls = TlsConfig(ca_file=args.ca, cert_file=args.cert, key_file=args.key)
    data = args.bundle.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        who = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        who = "cli:unknown"
    store = Store(args.db)
    try:
        store.create()  # an unreachable store stops here, before anything is pushed
        accounts = Accounts(store.engine)
        for window in args.window:
            target = f"{args.site}/{window}"
            detail = {"bundle": args.bundle.name, "sha256": digest, "bytes": len(data)}
            try:
                push_bundle(
                    data,
                    args.site,
                    window,
                    host=args.host,
                    port=args.port,
                    tls=tls,
                    protocol=mqtt.MQTTv311 if args.mqtt_protocol == "3.1.1" else mqtt.MQTTv5,
                )
            except Exception as exc:
                failed = detail | {"error": str(exc)[:200]}
                accounts.audit(who, "bundle_push_failed", target, failed, site=args.site)
                raise
            accounts.audit(who, "bundle_push", target, detail, site=args.site)
            print(f"pushed {args.bundle} to {target}")
    finally:
        store.close()
    return 0


def register(sub: Any) -> None:
    """Add ``warmwindow bundle ...`` to the CLI (``server/cli.py`` registers it)."""
    b = sub.add_parser("bundle", help="signed update bundles: keygen, build, push")
    bs = b.add_subparsers(dest="bundle_command", required=True)
    k = bs.add_parser("keygen", help="new Ed25519 signing key (+ .pub)")
    k.add_argument("path", type=Path)
    k.set_defaults(func=_keygen)
    m = bs.add_parser("build", help="build and sign a model bundle")
    m.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    m.add_argument("--serial", type=int, required=True, help="monotonic bundle serial")
    m.add_argument("--version", default=None, help="default: the models manifest version")
    m.add_argument("--from-dir", type=Path, default=Path("models"), help="models directory")
    m.add_argument("--add", action="append", help="extra file: release/path=source")
    m.add_argument("--target", action="append", help="site/window (repeatable); default all")
    m.add_argument("-o", "--out", type=Path, required=True)
    m.set_defaults(func=_build)
    p = bs.add_parser("push", help="publish a bundle as windows' retained config")
    p.add_argument("bundle", type=Path)
    p.add_argument("--site", required=True)
    p.add_argument("--window", action="append", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument(
        "--mqtt-protocol", choices=("5", "3.1.1"), default="5", help="3.1.1 for a NATS cluster"
    )
    p.add_argument("--ca", type=Path)
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument(
        "--db",
        default="sqlite:///var/warmwindow.db",
        help="the aggregator's store (SQLAlchemy URL): each push is audited there",
    )
    p.set_defaults(func=_push)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.bundles", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
