"""The agent installs and runs without the server's packages.

A fresh venv with ``pip install ".[agent]"`` is the real check (see docs/architecture.md);
this test runs the same question in seconds: a child interpreter in which the server's
third-party packages cannot be imported imports every agent module and builds the
``warmwindow`` parser, which must offer no server command and say which extra to install.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from tests.conftest import REPO

CHILD = r"""
import argparse, importlib, json, pkgutil, sys

BLOCKED = {"fastapi", "sqlalchemy", "uvicorn", "alembic", "psycopg", "openpyxl", "starlette"}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
import agent
failed, modules = {}, []
for mod in pkgutil.walk_packages(agent.__path__, "agent."):
    modules.append(mod.name)
    try:
        importlib.import_module(mod.name)
    except ModuleNotFoundError as exc:
        failed[mod.name] = str(exc)
from agent.cli import build_parser
parser = build_parser()
sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
commands = sorted(sub.choices)
out = {"failed": failed, "modules": modules, "commands": commands, "epilog": parser.epilog}
print(json.dumps(out))
"""


def test_agent_without_the_server_packages() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["modules"]) >= 25  # every agent module was imported
    assert got["failed"] == {}
    assert {"config", "docs", "agent", "models", "vision"} <= set(got["commands"])
    assert not {"server", "user", "token", "retention", "rollups", "demo", "bundle"} & set(
        got["commands"]
    )
    assert "pip install 'warmwindow[server]'" in got["epilog"]


def test_with_the_server_packages_every_command_is_offered() -> None:
    from agent.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = set(sub.choices)
    assert {"server", "user", "token", "retention", "rollups", "demo", "bundle"} <= commands
    assert parser.epilog is None
