#!/usr/bin/env python3
"""A small PKI for one WarmWindow broker: a CA, the broker's certificate, client certificates.

Run it on the machine that keeps the CA key (an offline laptop or the server itself, not
a terminal). It writes, under ``--dir`` (default ``./pki``)::

    ca.crt  ca.key  crl.pem             the CA (keep ca.key offline, mode 0600), revocations
    server/ca.crt server.crt server.key the broker's TLS identity -> /etc/mosquitto/warmwindow/
    clients/<name>/ca.crt window.crt window.key
                                        one per identity -> /etc/warmwindow/tls/ on the terminal
    nodes/<name>/ca.crt node.crt node.key
                                        a clustered node (NATS, deploy/city/nats_config.py): serves
                                        terminals and its peers' routes -> /etc/nats-server/tls/

Identities. A window's certificate has CN ``<site>/<window>`` (``qingpu/w03``). Mosquitto
(``use_identity_as_username true``) and EMQX (``peer_cert_as_username = cn``) both take
the CN as the MQTT username, and ``ww/v1/<CN>/event`` is then exactly the window's own
topic: the ACL (``acl.py``) and EMQX's ``${cert_common_name}`` rules rest on that. The
aggregator's identity is ``ww-server`` (no slash, so it can never equal a window's).

Keys are ECDSA P-256: small, fast to verify on a Pi, and accepted by Mosquitto, EMQX
and Python's ssl alike (Ed25519 TLS certificates are not, everywhere).

Examples::

    python deploy/mosquitto/pki.py init --dir pki
    python deploy/mosquitto/pki.py server --dir pki --dns mqtt.qingpu.example --ip 10.20.0.5
    python deploy/mosquitto/pki.py site --dir pki firmware_config/sites/qingpu
    python deploy/mosquitto/pki.py client --dir pki ww-server
    python deploy/mosquitto/pki.py node --dir pki nats1 --dns nats1.ww.city --ip 10.20.0.11
    python deploy/mosquitto/pki.py revoke --dir pki qingpu/w03   # copy crl.pem, reload

Re-running a command keeps existing keys and certificates unless ``--force`` is given,
so adding a window never re-keys the rest of the fleet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_IDENTITY = "ww-server"
#: A window identity "<site>/<window>" or a service identity; never MQTT wildcards.
_IDENTITY = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}(/[a-z0-9][a-z0-9-]{0,31})?$")
_ORG = "WarmWindow"


class PkiError(RuntimeError):
    """Something the operator must fix (missing CA, bad name)."""


def window_identity(site: str, window: str) -> str:
    return f"{site}/{window}"


def client_dir_name(identity: str) -> str:
    return identity.replace("/", "-")


def _now() -> dt.datetime:
    # Back-date a little: a Pi without RTC may run slightly behind until NTP syncs.
    return dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # services start unattended; protect by file mode
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(root: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt, key = root / "ca.crt", root / "ca.key"
    if not crt.exists() or not key.exists():
        raise PkiError(f"no CA in {root}: run 'pki.py init --dir {root}' first")
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    priv = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(priv, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key} is not an EC key")
    return cert, priv


def init_ca(
    root: Path, *, days: int = 3650, name: str = "WarmWindow CA", force: bool = False
) -> Path:
    """Create the CA key and self-signed certificate (pathlen 0: it signs leaves only)."""
    crt = root / "ca.crt"
    if crt.exists() and not force:
        return crt
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    start = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(root / "ca.key", key)
    _write_cert(crt, cert)
    write_crl(root)  # Mosquitto's crlfile must exist even when nothing is revoked
    return crt


def _leaf(
    root: Path,
    common_name: str,
    *,
    server: bool,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int,
    route: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = _load_ca(root)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                if route
                else [
                    ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _issue_serving(
    root: Path,
    out: Path,
    stem: str,
    common_name: str | None,
    *,
    dns: Sequence[str],
    ips: Sequence[str],
    days: int,
    force: bool,
    route: bool,
) -> Path:
    """A serving certificate in ``out/<stem>.crt`` valid for localhost and 127.0.0.1 too."""
    if (out / f"{stem}.crt").exists() and not force:
        return out
    all_dns = ["localhost", *[d for d in dns if d != "localhost"]]
    all_ips = ["127.0.0.1", *[i for i in ips if i != "127.0.0.1"]]
    cn = common_name or all_dns[-1]
    cert, key = _leaf(root, cn, server=True, dns=all_dns, ips=all_ips, days=days, route=route)
    _write_key(out / f"{stem}.key", key)
    _write_cert(out / f"{stem}.crt", cert)
    (out / "ca.crt").write_bytes((root / "ca.crt").read_bytes())
    return out


def issue_server(
    root: Path,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = 825,
    force: bool = False,
) -> Path:
    """The broker's certificate; always valid for localhost and 127.0.0.1 as well."""
    return _issue_serving(
        root, root / "server", "server", None, dns=dns, ips=ips, days=days, force=force, route=False
    )


def issue_node(
    root: Path,
    name: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = 825,
    force: bool = False,
) -> Path:
    """A clustered broker node's certificate (a NATS node): it serves terminals and dials
    its peers' routes with the same key, so it carries both serverAuth and clientAuth."""
    if not _IDENTITY.match(name) or "/" in name:
        raise PkiError(f"bad node name {name!r}: use a slug such as nats1")
    return _issue_serving(
        root,
        root / "nodes" / name,
        "node",
        name,
        dns=dns,
        ips=ips,
        days=days,
        force=force,
        route=True,
    )


def issue_client(root: Path, identity: str, *, days: int = 825, force: bool = False) -> Path:
    """A client certificate whose CN is ``identity`` (``site/window`` or ``ww-server``)."""
    if not _IDENTITY.match(identity):
        raise PkiError(f"bad identity {identity!r}: use <site>/<window> slugs or a service name")
    out = root / "clients" / client_dir_name(identity)
    if (out / "window.crt").exists() and not force:
        return out
    cert, key = _leaf(root, identity, server=False, days=days)
    _write_key(out / "window.key", key)
    _write_cert(out / "window.crt", cert)
    (out / "ca.crt").write_bytes((root / "ca.crt").read_bytes())
    return out


def site_windows(site_dir: Path) -> list[str]:
    """Identities of every window of a site directory (``site.toml`` + ``windows/*.toml``).

    Reads only the slugs, so the PKI machine does not need the agent installed;
    ``warmwindow config check`` validates the rest.
    """
    site = tomllib.loads((site_dir / "site.toml").read_text(encoding="utf-8"))["site"]
    out = []
    for f in sorted((site_dir / "windows").glob("*.toml")):
        out.append(window_identity(site, tomllib.loads(f.read_text(encoding="utf-8"))["window"]))
    return out


def write_crl(root: Path, revoke: Sequence[str] = (), *, days: int = 400) -> Path:
    """(Re)write ``crl.pem``, the CA's revocation list, adding the certificates of ``revoke``.

    A stolen terminal is cut off by revoking its certificate, not by editing the ACL: the
    ACL names the window, and the replacement terminal gets a new certificate for the same
    window. Mosquitto's ``crlfile`` refuses *every* client once the list is past its next
    update, so ``init`` writes an empty list and it must be rewritten (``pki.py crl``)
    before ``days`` run out; the server README puts that in the yearly checklist.
    """
    ca_cert, ca_key = _load_ca(root)
    crl_path = root / "crl.pem"
    revoked: list[x509.RevokedCertificate] = []
    if crl_path.exists():
        revoked = list(x509.load_pem_x509_crl(crl_path.read_bytes()))
    now = dt.datetime.now(dt.UTC)
    for identity in revoke:
        cert_path = root / "clients" / client_dir_name(identity) / "window.crt"
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if all(r.serial_number != cert.serial_number for r in revoked):
            revoked.append(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now)
                .build()
            )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=days))
    )
    for r in revoked:
        builder = builder.add_revoked_certificate(r)
    crl = builder.sign(ca_key, hashes.SHA256())
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return crl_path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--dir", type=Path, default=Path("pki"), help="PKI directory")
        sp.add_argument("--force", action="store_true", help="re-issue even if present")

    sp = sub.add_parser("init", help="create the CA")
    common(sp)
    sp.add_argument("--days", type=int, default=3650)
    sp = sub.add_parser("server", help="issue the broker certificate")
    common(sp)
    sp.add_argument("--dns", action="append", default=[], help="extra DNS name (repeatable)")
    sp.add_argument("--ip", action="append", default=[], help="extra IP address (repeatable)")
    sp.add_argument("--days", type=int, default=825)
    sp = sub.add_parser("node", help="issue a cluster node certificate (serves and routes)")
    common(sp)
    sp.add_argument("name", help="the node's name, e.g. nats1")
    sp.add_argument("--dns", action="append", default=[], help="extra DNS name (repeatable)")
    sp.add_argument("--ip", action="append", default=[], help="extra IP address (repeatable)")
    sp.add_argument("--days", type=int, default=825)
    sp = sub.add_parser("client", help="issue client certificates by identity")
    common(sp)
    sp.add_argument("identities", nargs="+", help="'<site>/<window>' or 'ww-server'")
    sp.add_argument("--days", type=int, default=825)
    sp = sub.add_parser("site", help="issue a certificate for every window of site dirs")
    common(sp)
    sp.add_argument("sites", nargs="+", type=Path)
    sp.add_argument("--days", type=int, default=825)
    sp = sub.add_parser("revoke", help="revoke client certificates (rewrites crl.pem)")
    sp.add_argument("--dir", type=Path, default=Path("pki"), help="PKI directory")
    sp.add_argument("identities", nargs="+")
    sp = sub.add_parser("crl", help="renew crl.pem before it expires (yearly)")
    sp.add_argument("--dir", type=Path, default=Path("pki"), help="PKI directory")
    args = p.parse_args(argv)

    try:
        if args.cmd == "init":
            print(init_ca(args.dir, days=args.days, force=args.force))
        elif args.cmd == "server":
            print(
                issue_server(args.dir, dns=args.dns, ips=args.ip, days=args.days, force=args.force)
            )
        elif args.cmd == "node":
            print(
                issue_node(
                    args.dir, args.name, dns=args.dns, ips=args.ip, days=args.days, force=args.force
                )
            )
        elif args.cmd in ("client", "site"):
            ids = (
                args.identities
                if args.cmd == "client"
                else [i for s in args.sites for i in site_windows(s)]
            )
            for identity in ids:
                print(issue_client(args.dir, identity, days=args.days, force=args.force))
        elif args.cmd == "revoke":
            print(write_crl(args.dir, args.identities))
        elif args.cmd == "crl":
            print(write_crl(args.dir))
    except (PkiError, OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        print(f"pki: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
