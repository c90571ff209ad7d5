"""``warmwindow user ...`` and ``warmwindow token ...``: each change audited as cli:<user>."""

from __future__ import annotations

import getpass
import io
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from server.accounts import ROLES, THROTTLE, Accounts, LoginLocked
from server.cli import GRANT_CHOICES, ROLE_CHOICES
from server.store.db import Store
from server.tokens import GRANTS, Tokens

ME = f"cli:{getpass.getuser()}"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(db: str, *argv: str) -> int:
    return main([*argv, "--db", db])


def entries(db: str) -> list[dict[str, Any]]:
    store = Store(db)
    try:
        return list(reversed(Accounts(store.engine).audit_entries(1000)))
    finally:
        store.close()


def accounts_of(db: str) -> tuple[Store, Accounts]:
    store = Store(db)
    return store, Accounts(store.engine)


def password_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n", encoding="utf-8")
    return str(path)


def test_choices_match_the_server() -> None:
    assert tuple(ROLE_CHOICES) == ROLES
    assert sorted(GRANT_CHOICES) == sorted(GRANTS)


def test_user_commands_are_audited(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = password_file(tmp_path, "good", "Lake-Window-42")
    weak = password_file(tmp_path, "weak", "alice-123456")
    add = ("user", "add", "alice", "--role", "inspector", "--scope", "site:qingpu")
    assert run(db, *add, "--password-file", weak) == 1
    assert "error: password" in capsys.readouterr().err
    assert run(db, *add, "--password-file", good, "--display-name", "Alice Li") == 0
    assert "user alice: inspector, scope site:qingpu" in capsys.readouterr().out

    assert run(db, "user", "list") == 0
    out = capsys.readouterr().out
    assert "alice" in out and "site:qingpu" in out and "active" in out and "Alice Li" in out
    assert "scrypt" not in out

    store, accounts = accounts_of(db)
    try:
        token = accounts.login("alice", "Lake-Window-42")
        assert token is not None and accounts.principal(token) is not None
        assert run(db, "user", "disable", "alice") == 0
        assert accounts.principal(token) is None  # the session ended
        assert accounts.login("alice", "Lake-Window-42") is None
        assert run(db, "user", "enable", "alice") == 0
        assert accounts.login("alice", "Lake-Window-42") is not None

        # a new password from stdin (not a terminal), then by prompt, never echoed
        monkeypatch.setattr("sys.stdin", io.StringIO("Second-Window-43\n"))
        assert run(db, "user", "reset-password", "alice") == 0
        assert accounts.login("alice", "Lake-Window-42") is None
        assert accounts.login("alice", "Second-Window-43") is not None
        prompts: list[str] = []

        def fake_getpass(prompt: str = "") -> str:
            prompts.append(prompt)
            return "Third-Window-44"

        monkeypatch.setattr("sys.stdin", _Tty())
        monkeypatch.setattr(getpass, "getpass", fake_getpass)
        assert run(db, "user", "reset-password", "alice") == 0
        assert prompts == ["password for alice: ", "again: "]
        assert accounts.login("alice", "Third-Window-44") is not None
        assert "Third-Window-44" not in capsys.readouterr().out

        assert run(db, "user", "role", "alice", "--role", "centre_manager") == 0
        user = accounts.get_user("alice")
        assert user is not None and (user.role, user.scope) == ("centre_manager", "site:qingpu")
        assert run(db, "user", "role", "alice", "--role", "readonly", "--scope", "all") == 0
        assert run(db, "user", "role", "alice", "--role", "readonly", "--scope", "nowhere") == 1
        assert run(db, "user", "disable", "bob") == 1
        assert "no user bob" in capsys.readouterr().err
    finally:
        store.close()

    mine = [e for e in entries(db) if e["username"] == ME]
    audited = [(e["username"], e["action"], e["target"]) for e in mine]
    assert audited == [
        (ME, "user_add", "alice"),
        (ME, "user_disable", "alice"),
        (ME, "user_enable", "alice"),
        (ME, "user_password", "alice"),
        (ME, "user_password", "alice"),
        (ME, "user_role", "alice"),
        (ME, "user_role", "alice"),
    ]
    assert all("Window-4" not in str(e["detail"]) for e in entries(db))


def test_user_add_updates_an_existing_user(db: str, tmp_path: Path) -> None:
    first = password_file(tmp_path, "p1", "Pier-Window-0001")
    second = password_file(tmp_path, "p2", "Pier-Window-0002")
    assert run(db, "user", "add", "bob", "--role", "readonly", "--password-file", first) == 0
    assert run(db, "user", "add", "bob", "--role", "inspector", "--password-file", second) == 0
    store, accounts = accounts_of(db)
    try:
        assert accounts.login("bob", "Pier-Window-0001") is None
        assert accounts.login("bob", "Pier-Window-0002") is not None
        user = accounts.get_user("bob")
        assert user is not None and user.role == "inspector"
    finally:
        store.close()
    adds = [e["detail"] for e in entries(db) if e["action"] == "user_add"]
    assert [d["updated"] for d in adds] == [False, True]


def test_token_commands(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    create = ("token", "create", "queue-1", "--scope", "site:qingpu")
    assert run(db, *create, "--grant", "queue", "--grant", "read") == 0
    captured = capsys.readouterr()
    value = captured.out.strip().splitlines()[-1]
    assert value.startswith("wwt_") and "shown this once" in captured.err
    token_id = value.split("_")[1]

    store = Store(db)
    try:
        p = Tokens(store.engine).principal(value)
        assert p is not None and p.grants == frozenset({"queue", "read"})
        assert run(db, "token", "list") == 0
        listed = capsys.readouterr().out
        assert token_id in listed and "active" in listed and value not in listed
        assert run(db, "token", "revoke", token_id) == 0
        assert Tokens(store.engine).principal(value) is None
        assert run(db, "token", "revoke", token_id) == 1
        assert "already revoked" in capsys.readouterr().err
        assert run(db, "token", "revoke", "nosuchtoken0") == 1
        assert run(db, "token", "list") == 0
        assert "revoked" in capsys.readouterr().out
    finally:
        store.close()
    with pytest.raises(SystemExit):
        run(db, "token", "create", "x", "--scope", "all", "--grant", "sudo")

    audited = [(e["username"], e["action"], e["target"]) for e in entries(db)]
    assert (ME, "token_create", token_id) in audited
    assert (ME, "token_revoke", token_id) in audited
    assert value not in str(entries(db))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_user_unlock_lifts_a_sign_in_lock(db: str, tmp_path: Path) -> None:
    pw = password_file(tmp_path, "p", "Harbour-Lights-7")
    assert run(db, "user", "add", "chen", "--role", "inspector", "--password-file", pw) == 0
    store, accounts = accounts_of(db)
    try:
        for _ in range(THROTTLE.user_failures):
            assert accounts.login("chen", "wrong-password", address="10.1.1.1") is None
        with pytest.raises(LoginLocked):
            accounts.login("chen", "Harbour-Lights-7")
        assert run(db, "user", "unlock", "chen") == 0
        assert accounts.login("chen", "Harbour-Lights-7") is not None
        assert run(db, "user", "unlock", "nobody") == 1
    finally:
        store.close()
    actions = [(e["username"], e["action"], e["target"]) for e in entries(db)]
    assert ("chen", "login_locked", "user:chen") in actions
    assert (ME, "user_unlock", "chen") in actions
