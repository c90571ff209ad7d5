"""The ``warmwindow`` command. Subcommands import what they need only when run,
so the agent's install on a Pi does not need the server's packages."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _config_check(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_site, load_window

    status = 0
    for path in args.paths:
        try:
            if path.is_file() and path.name != "site.toml":
                load_window(path)
                print(f"{path}: ok (window)")
            else:
                site = load_site(path)
                print(f"{path}: ok ({site.site.name}, {len(site.windows)} windows)")
        except ConfigError as exc:
            status = 1
            for problem in exc.problems:
                print(problem, file=sys.stderr)
    return status


def _docs_protocol(args: argparse.Namespace) -> int:
    from agent.protocol_doc import render

    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run `warmwindow docs protocol`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def _server(args: argparse.Namespace) -> int:
    import uvicorn

    from server.api.app import ServerSettings, create_app
    from server.ingest import IngestSettings

    if args.from_env:
        from server.settings import ServerEnv

        env = ServerEnv()
        uvicorn.run(
            create_app(env.server_settings()),
            host=env.http_host,
            port=env.http_port,
            log_level="info",
        )
        return 0
    settings = ServerSettings(
        db_url=args.db,
        sites=args.site,
        mqtt=IngestSettings(
            host=args.mqtt_host,
            port=args.mqtt_port,
            client_id=args.client_id,
            share_group=args.share_group,
        ),
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def _cli_user() -> str:
    """Who to write in the audit log for a change made at the command line."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (some containers)
        import os

        return f"cli:uid{os.getuid()}"


def _read_password(args: argparse.Namespace, username: str) -> str:
    """From --password-file, else stdin when it is not a terminal, else asked twice
    without echo."""
    import getpass

    if args.password_file:
        return str(args.password_file.read_text(encoding="utf-8").strip())
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {username}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _accounts_cmd(args: argparse.Namespace) -> int:
    """Run one ``user``/``token`` subcommand against the store; errors print, exit 1."""
    from server.accounts import Accounts, UnknownUser
    from server.store.db import Store

    store = Store(args.db)
    try:
        store.create()
        return int(args.action(args, Accounts(store.engine), store, _cli_user()))
    except (ValueError, UnknownUser) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _user_add(args: argparse.Namespace, accounts: Any, _store: Any, by: str) -> int:
    from server.accounts import check_password

    password = _read_password(args, args.username)
    check_password(password, args.username)
    accounts.add_user(
        args.username, password, args.role, args.scope, args.display_name or "", by=by
    )
    print(f"user {args.username}: {args.role}, scope {args.scope}")
    return 0


def _user_list(args: argparse.Namespace, accounts: Any, _store: Any, _by: str) -> int:
    rows = [("USER", "ROLE", "SCOPE", "STATE", "NAME")]
    for u in accounts.list_users():
        state = "disabled" if u.disabled else "active"
        rows.append((u.username, u.role, u.scope, state, u.display_name))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4])
    return 0


def _user_disable(args: argparse.Namespace, accounts: Any, _store: Any, by: str) -> int:
    accounts.set_disabled(args.username, True, by)
    print(f"user {args.username}: disabled, sessions ended")
    return 0


def _user_enable(args: argparse.Namespace, accounts: Any, _store: Any, by: str) -> int:
    accounts.set_disabled(args.username, False, by)
    print(f"user {args.username}: enabled")
    return 0


def _user_unlock(args: argparse.Namespace, accounts: Any, _store: Any, by: str) -> int:
    if accounts.get_user(args.username) is None:
        raise ValueError(f"no user {args.username}")
    cleared = accounts.unlock(args.username, by)
    print(f"user {args.username}: " + ("sign-in unlocked" if cleared else "was not locked"))
    return 0


def _user_password(args: argparse.Namespace, accounts: Any, _store: Any, by: str) -> int:
    if accounts.get_user(args.username) is None:
        raise ValueError(f"no user {args.username}")
    accounts.reset_password(args.username, _read_password(args, args.username), by)
    print(f"user {args.username}: new password set, sessions ended")
    return 0


def _user_role(args: argparse.Namespace, accounts: Any, _store: Any, by: str) -> int:
    old = accounts.get_user(args.username)
    if old is None:
        raise ValueError(f"no user {args.username}")
    scope = args.scope if args.scope is not None else old.scope
    accounts.set_role(args.username, args.role, scope, by)
    print(f"user {args.username}: {args.role}, scope {scope}, sessions ended")
    return 0


def _token_create(args: argparse.Namespace, _accounts: Any, store: Any, by: str) -> int:
    from server.tokens import Tokens

    token_id, value = Tokens(store.engine).create(args.name, args.scope, args.grant, by)
    print(f"token {token_id} ({args.name}): scope {args.scope}, grants {','.join(args.grant)}")
    print("the value is shown this once; store it now:", file=sys.stderr)
    print(value)
    return 0


def _token_list(args: argparse.Namespace, _accounts: Any, store: Any, _by: str) -> int:
    from server.tokens import Tokens

    for t in Tokens(store.engine).list():
        state = "revoked" if t["revoked_ms"] is not None else "active"
        grants = ",".join(t["grants"])
        print(f"{t['token_id']}  {t['name']}  {t['scope']}  {grants}  {state}")
    return 0


def _token_revoke(args: argparse.Namespace, _accounts: Any, store: Any, by: str) -> int:
    from server.tokens import Tokens

    tokens = Tokens(store.engine)
    if tokens.get(args.token_id) is None:
        raise ValueError(f"no token {args.token_id}")
    if not tokens.revoke(args.token_id, by):
        raise ValueError(f"token {args.token_id} is already revoked")
    print(f"token {args.token_id}: revoked")
    return 0


def _retention(args: argparse.Namespace) -> int:
    import time

    from server.store.db import Store

    if args.from_env:
        from server.settings import ServerEnv

        env = ServerEnv()
        args.db = env.database_url()
        args.raw_events_days, args.measures_days = env.raw_events_days, env.measures_days
    store = Store(args.db)
    removed = store.apply_retention(
        time.time_ns() // 1_000_000, args.raw_events_days, args.measures_days
    )
    store.close()
    print(" ".join(f"{k}={v}" for k, v in removed.items()))
    return 0


def _rollups(args: argparse.Namespace) -> int:
    from server.metrics.periods import period_bounds
    from server.store.db import Store

    if args.from_env:
        from server.settings import ServerEnv

        args.db = ServerEnv().database_url()
    since = period_bounds(args.since)[0] if args.since else None
    store = Store(args.db)
    try:
        store.create()  # the rollups arrived with migration 0004
        rows = store.rebuild_rollups(since)
    finally:
        store.close()
    print(f"daily_rollups rebuilt: {rows} rows")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from server.demo import run_demo

    return run_demo(
        site_dir=args.site,
        http_port=args.port,
        workdir=args.workdir,
        prefer_mosquitto=not args.embedded_broker,
        duration_s=args.duration,
        camera=not args.scripted_perception,
        speed=args.speed,
    )


def _agent(args: argparse.Namespace) -> int:
    from agent.app import run_agent_cli

    return run_agent_cli(args)


ROLE_CHOICES = ["district_admin", "centre_manager", "inspector", "readonly"]
GRANT_CHOICES = ["read", "kpis", "metrics", "queue", "callbacks"]  # server.tokens.GRANTS


def _account_commands(sub: Any) -> None:
    """``user ...`` and ``token ...``: every change is audited as ``cli:<os user>``."""

    def command(parent: Any, name: str, action: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=text)
        p.add_argument("--db", default="sqlite:///var/warmwindow.db", help="SQLAlchemy URL")
        p.set_defaults(func=_accounts_cmd, action=action)
        return p

    password_help = "else read from stdin, or asked without echo on a terminal"
    user = sub.add_parser("user", help="dashboard accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = command(user_sub, "add", _user_add, "add or update a dashboard user")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLE_CHOICES)
    add.add_argument("--scope", default="all", help="all | district:<name> | site:<slug>")
    add.add_argument("--display-name", default=None)
    add.add_argument("--password-file", type=Path, default=None, help=password_help)
    command(user_sub, "list", _user_list, "list the dashboard users")
    for name, action, text in (
        ("disable", _user_disable, "disable a user (ends their sessions)"),
        ("enable", _user_enable, "enable a disabled user"),
        ("unlock", _user_unlock, "lift a sign-in lock after too many failed attempts"),
    ):
        command(user_sub, name, action, text).add_argument("username")
    reset = command(user_sub, "reset-password", _user_password, "set a new password")
    reset.add_argument("username")
    reset.add_argument("--password-file", type=Path, default=None, help=password_help)
    role = command(user_sub, "role", _user_role, "change a user's role and scope")
    role.add_argument("username")
    role.add_argument("--role", required=True, choices=ROLE_CHOICES)
    role.add_argument("--scope", default=None, help="all | district:<name> | site:<slug>")

    token = sub.add_parser("token", help="service tokens for other systems")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = command(token_sub, "create", _token_create, "a new token (value printed once)")
    create.add_argument("name")
    create.add_argument("--scope", required=True, help="all | district:<name> | site:<slug>")
    create.add_argument(
        "--grant", action="append", required=True, choices=GRANT_CHOICES, help="repeatable"
    )
    command(token_sub, "list", _token_list, "list the tokens (never their values)")
    revoke = command(token_sub, "revoke", _token_revoke, "revoke a token")
    revoke.add_argument("token_id")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmwindow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    cfg = sub.add_parser("config", help="device configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate site directories or window files")
    check.add_argument("paths", nargs="+", type=Path)
    check.set_defaults(func=_config_check)

    docs = sub.add_parser("docs", help="generated documentation")
    docs_sub = docs.add_subparsers(dest="docs_command", required=True)
    proto = docs_sub.add_parser("protocol", help="write docs/protocol.md from the models")
    proto.add_argument("--out", type=Path, default=REPO / "docs" / "protocol.md")
    proto.add_argument("--check", action="store_true", help="fail if the file is stale")
    proto.set_defaults(func=_docs_protocol)

    srv = sub.add_parser("server", help="run the aggregator (ingest + API + dashboard)")
    srv.add_argument("--db", default="sqlite:///var/warmwindow.db", help="SQLAlchemy URL")
    srv.add_argument("--site", type=Path, action="append", default=[], help="site dir to register")
    srv.add_argument("--mqtt-host", default="127.0.0.1")
    srv.add_argument("--mqtt-port", type=int, default=1883)
    srv.add_argument("--client-id", default="ww-server-1", help="stable per replica")
    srv.add_argument("--share-group", default=None, help="MQTT shared subscription group")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument(
        "--from-env",
        action="store_true",
        help="all settings from WW_* variables (server/settings.py)",
    )
    srv.set_defaults(func=_server)

    _account_commands(sub)

    ret = sub.add_parser("retention", help="apply the store's retention policy (run daily)")
    ret.add_argument("--db", default="sqlite:///var/warmwindow.db", help="SQLAlchemy URL")
    ret.add_argument("--raw-events-days", type=int, default=400)
    ret.add_argument("--measures-days", type=int, default=3 * 366)
    ret.add_argument("--from-env", action="store_true", help="database and periods from WW_*")
    ret.set_defaults(func=_retention)

    rol = sub.add_parser(
        "rollups", help="rebuild the daily rollups from the measure tables (kept by ingest)"
    )
    rol.add_argument("--db", default="sqlite:///var/warmwindow.db", help="SQLAlchemy URL")
    rol.add_argument("--since", default=None, help="first day/month to rebuild, e.g. 2026-11")
    rol.add_argument("--from-env", action="store_true", help="database from WW_*")
    rol.set_defaults(func=_rollups)

    demo = sub.add_parser("demo", help="broker + server + the example site's windows, simulated")
    demo.add_argument("--site", type=Path, default=REPO / "firmware_config" / "sites" / "qingpu")
    demo.add_argument("--port", type=int, default=8080, help="HTTP port of the page")
    demo.add_argument("--workdir", type=Path, default=REPO / "var" / "demo")
    demo.add_argument("--embedded-broker", action="store_true", help="use amqtt, not Mosquitto")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument("--speed", type=float, default=4.0, help="simulated seconds per second")
    demo.add_argument(
        "--scripted-perception", action="store_true", help="skip the frames and the models"
    )
    demo.set_defaults(func=_demo)

    agent = sub.add_parser("agent", help="run one window's agent")
    agent.add_argument("--site", type=Path, required=True, help="site directory")
    agent.add_argument("--window", required=True, help="window slug, e.g. w03")
    agent.add_argument("--state-dir", type=Path, default=Path("/var/lib/warmwindow"))
    agent.add_argument("--mock-pins", action="store_true", help="gpiozero MockFactory pins")
    agent.add_argument("--scripted", action="store_true", help="scripted perception (no camera)")
    agent.add_argument("--broker", default=None, help="HOST:PORT, overriding the site file")
    agent.set_defaults(func=_agent)

    # Perception and model tools register themselves when their packages are present.
    for module in ("models.cli", "agent.vision.cli", "server.bundles"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
