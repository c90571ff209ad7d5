"""The ``warmwindow`` command. Subcommands import what they need only when run,
so the agent's install on a Pi does not need the server's packages."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
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


def _config_show(args: argparse.Namespace) -> int:
    """The window's effective configuration: each field, its value and where it came
    from (the window file, a default, or a settings push received over the air)."""
    import json
    import tomllib

    from agent.config import ConfigError, load_site
    from agent.overrides import OverrideError, apply_overrides
    from agent.window_settings import installed_overrides

    try:
        site = load_site(args.site)
        window = site.window(args.window)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except KeyError:
        print(f"{args.site}: no window {args.window!r}", file=sys.stderr)
        return 1
    window_file = next(
        f
        for f in sorted((site.path / "windows").glob("*.toml"))
        if tomllib.loads(f.read_text(encoding="utf-8")).get("window") == args.window
    )
    in_file = _flatten(tomllib.loads(window_file.read_text(encoding="utf-8")))
    serial, overrides = installed_overrides(args.state_dir / "settings")
    sources: dict[str, str] = {}
    note = "no settings received over the air"
    if overrides is not None and overrides.layers:
        try:
            effective = apply_overrides(window, overrides)
        except OverrideError as exc:
            note = f"settings serial {serial} installed but NOT applied: {exc}"
        else:
            window, sources = effective.window, dict(effective.sources)
            note = f"settings serial {serial}: " + ", ".join(
                f"push {layer.push_id} ({layer.scope}, by {layer.by})" for layer in overrides.layers
            )
    from agent.window_settings import installed_directory

    try:
        directory = installed_directory(args.state_dir / "settings", site.site.site)
    except OverrideError as exc:
        directory, note = None, f"{note}; its clerk directory is NOT usable: {exc}"
    if directory is not None:
        note += f"; clerk directory received over the air: {len(directory.clerks)} clerks"
    values = _flatten(window.model_dump(mode="json"))
    if args.json:
        doc = {
            path: {"value": value, "from": sources.get(path) or _origin(path, in_file)}
            for path, value in values.items()
        }
        print(
            json.dumps(
                {"window": args.window, "settings_serial": serial, "fields": doc},
                ensure_ascii=False,
                indent=1,
            )
        )
        return 0
    print(f"# {site.site.site}/{args.window}: {window_file}")
    print(f"# {note}")
    for path, value in values.items():
        origin = sources.get(path) or _origin(path, in_file)
        print(f"{path} = {json.dumps(value, ensure_ascii=False)}  # {origin}")
    return 0


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _origin(path: str, in_file: dict[str, Any]) -> str:
    return "window file" if path in in_file else "default"


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


def _agent(args: argparse.Namespace) -> int:
    from agent.app import run_agent_cli
    from agent.config import ConfigError
    from agent.hardware.badge import BadgeReaderError
    from agent.settings import AgentEnvError

    try:
        return run_agent_cli(args)
    except AgentEnvError as exc:
        print(f"warmwindow agent: bad environment: {exc}", file=sys.stderr)
        return 2
    except BadgeReaderError as exc:
        print(f"warmwindow agent: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"warmwindow agent: {problem}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmwindow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    cfg = sub.add_parser("config", help="device configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate site directories or window files")
    check.add_argument("paths", nargs="+", type=Path)
    check.set_defaults(func=_config_check)
    show = cfg_sub.add_parser(
        "show",
        help="one window's effective configuration: its file, defaults and the settings "
        "received over the air, each field with where it came from",
    )
    show.add_argument("--site", type=Path, default=Path("/etc/warmwindow/site"))
    show.add_argument("--window", required=True, help="window slug, e.g. w03")
    show.add_argument("--state-dir", type=Path, default=Path("/var/lib/warmwindow"))
    show.add_argument("--json", action="store_true", help="machine-readable")
    show.set_defaults(func=_config_show)

    docs = sub.add_parser("docs", help="generated documentation")
    docs_sub = docs.add_subparsers(dest="docs_command", required=True)
    proto = docs_sub.add_parser("protocol", help="write docs/protocol.md from the models")
    proto.add_argument("--out", type=Path, default=REPO / "docs" / "protocol.md")
    proto.add_argument("--check", action="store_true", help="fail if the file is stale")
    proto.set_defaults(func=_docs_protocol)

    agent = sub.add_parser("agent", help="run one window's agent")
    agent.add_argument("--site", type=Path, required=True, help="site directory")
    agent.add_argument("--window", required=True, help="window slug, e.g. w03")
    agent.add_argument("--state-dir", type=Path, default=Path("/var/lib/warmwindow"))
    agent.add_argument(
        "--pins",
        choices=["lgpio", "mock"],
        default="lgpio",
        help="gpiozero pin factory: lgpio on a Raspberry Pi, mock for simulations",
    )
    agent.add_argument("--mock-pins", action="store_true", help="same as --pins mock")
    agent.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="ONNX models directory (default $WW_MODEL_DIR, else the package's own); "
        "an installed bundle release takes precedence",
    )
    agent.add_argument("--scripted", action="store_true", help="scripted perception (no camera)")
    agent.add_argument("--broker", default=None, help="HOST:PORT, overriding the site file")
    agent.set_defaults(func=_agent)

    # Model, vision and server tools register themselves when their packages are there.
    missing = [f"{name}: {why}" for name, why in _register_plugins(sub)]
    if missing:
        parser.epilog = "not installed here: " + "; ".join(missing)
    return parser


#: Entry point group of the command's plugins (pyproject.toml [project.entry-points]).
PLUGINS = "warmwindow.commands"
#: The extra to install for each plugin whose packages are missing.
EXTRAS = {"server": "warmwindow[server]", "models": "warmwindow[dev]"}


def _register_plugins(sub: Any) -> list[tuple[str, str]]:
    """Load each ``warmwindow.commands`` entry point and let it add its subcommands; one
    whose packages are not installed is left out (and named, with the extra to install).
    This module never imports the server itself: the entry point names it."""
    left_out: list[tuple[str, str]] = []
    for ep in sorted(entry_points(group=PLUGINS), key=lambda e: e.name):
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:
            extra = EXTRAS.get(ep.name, "its extra")
            left_out.append((ep.name, f"needs {exc.name} (pip install '{extra}')"))
            continue
        register(sub)
    return left_out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic names each of its plugins at INFO on first use: never news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
