"""The server's subcommands of ``warmwindow``: server, user, token, retention, rollups,
demo, bundle, queue and helpdesk.

``agent/cli.py`` offers them through the ``warmwindow.commands`` entry point when the
server's packages are installed (``pip install "warmwindow[server]"``); an install with
only the agent extra never lists them. The imports at the top are what makes that so:
without the server extra, importing this module fails and the command is not offered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import sqlalchemy  # noqa: F401  (the server extra: without it, no server commands)
import uvicorn

from server import bundles, helpdesk_feed, queue_replay
from server.accounts import ROLES
from server.tokens import GRANTS

REPO = Path(__file__).resolve().parent.parent


def _server(args: argparse.Namespace) -> int:
    from server.api.app import ServerSettings, create_app
    from server.ingest import IngestSettings

    if args.from_env:
        from server.settings import ServerEnv
        from server.workdays import use_calendar_file

        env = ServerEnv()
        # The case clock's calendar: a bad override file stops the server here.
        use_calendar_file(env.calendar_file)
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
        args.username,
        password,
        args.role,
        args.scope,
        args.display_name or "",
        by=by,
        clerk_id=args.clerk_id,
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


def _clerk_directory(args: argparse.Namespace) -> int:
    """Write a centre's clerk directory (digests only) for its terminals."""
    from server.store.db import Store

    store = Store(args.db)
    try:
        store.create()
        directory = store.directory(args.site)
    finally:
        store.close()
    text = directory.model_dump_json(indent=1)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n")
        args.out.chmod(0o640)  # the terminal's group only: short secrets, salted
        print(f"{args.out}: {len(directory.clerks)} clerks of {args.site}")
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
        shift_change_after_s=args.shift_change_after,
    )


ROLE_CHOICES = list(ROLES)
GRANT_CHOICES = sorted(GRANTS)


def _account_commands(sub: Any) -> None:
    """``user ...`` and ``token ...``: every change is audited as ``cli:<os user>``."""

    def command(parent: Any, name: str, action: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=text)
        p.add_argument("--db", default="sqlite:///var/warmwindow.db", help="SQLAlchemy URL")
        p.set_defaults(func=_accounts_cmd, action=action)
        return p

    clerks = sub.add_parser("clerks", help="clerks' sign-in credentials")
    clerks_sub = clerks.add_subparsers(dest="clerks_command", required=True)
    cd = clerks_sub.add_parser(
        "directory", help="write a centre's clerk directory for its terminals (digests only)"
    )
    cd.add_argument("--db", default="sqlite:///var/warmwindow.db", help="SQLAlchemy URL")
    cd.add_argument("--site", required=True, help="the centre's slug")
    cd.add_argument("--out", type=Path, default=None, help="file (default: stdout)")
    cd.set_defaults(func=_clerk_directory)

    password_help = "else read from stdin, or asked without echo on a terminal"
    user = sub.add_parser("user", help="dashboard accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = command(user_sub, "add", _user_add, "add or update a dashboard user")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLE_CHOICES)
    add.add_argument("--scope", default="all", help="all | district:<name> | site:<slug>")
    add.add_argument("--display-name", default=None)
    add.add_argument("--clerk-id", default=None, help="a clerk account's clerk (role clerk)")
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


def register(sub: Any) -> None:
    """Add the server's subcommands to the ``warmwindow`` parser."""
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
    demo.add_argument(
        "--shift-change-after",
        type=float,
        default=40.0,
        metavar="S",
        help="real seconds before the relief clerk takes over the first window",
    )
    demo.set_defaults(func=_demo)

    bundles.register(sub)
    queue_replay.register(sub)
    helpdesk_feed.register(sub)
