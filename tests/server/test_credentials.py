"""Badge and PIN credentials: enrolled through the API as digests only, a centre's
directory written for its terminals, and the terminal's sign-in reading it."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from agent.directory import ClerkDirectory
from agent.signin import Signal, SignIn
from server.api.app import ServerSettings, create_app
from server.store.schema import audit_log, clerk_credentials
from tests.conftest import EXAMPLE_SITE
from tests.server.test_access_matrix import make_site
from tests.server.test_api import sign_in as log_in


def test_credentials_are_digests_and_make_a_directory_the_terminal_reads(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'ww.db'}"
    app = create_app(ServerSettings(db_url=db, sites=[EXAMPLE_SITE], mqtt=None))
    with TestClient(app) as c:
        store, accounts = app.state.store, app.state.accounts
        accounts.add_user("boss", "Boss-pass-2026!", "centre_manager", "site:qingpu")
        store.add_clerk("c-li", "李敏", "qingpu")
        store.add_clerk("c-wang", "王芳", "qingpu")
        csrf = log_in(c, "boss", "Boss-pass-2026!")
        h = {"X-CSRF-Token": csrf}
        r = c.post(
            "/api/clerks/c-li/credentials",
            json={"badges": ["0012345678"], "pin": "1234"},
            headers=h,
        )
        assert r.status_code == 200 and r.json() == {
            "clerk_id": "c-li",
            "badges": 1,
            "pin": True,
            "terminals": None,  # this server pushes no settings: the directory is a file
        }
        # the same PIN for a second clerk: the terminal could not tell them apart
        same = c.post("/api/clerks/c-wang/credentials", json={"pin": "1234"}, headers=h)
        assert same.status_code == 409
        bad = c.post("/api/clerks/c-wang/credentials", json={"pin": "1239"}, headers=h)
        assert bad.status_code == 422  # 9 is not a key of the panel
        with store.engine.connect() as conn:
            row = conn.execute(select(clerk_credentials)).one()._mapping
            audit = [
                dict(a._mapping)
                for a in conn.execute(
                    select(audit_log).where(audit_log.c.action == "set_credentials")
                )
            ]
        stored = json.dumps([row["badges"], row["pin"]])
        assert "0012345678" not in stored and "1234" not in stored  # digests only
        assert audit and "0012345678" not in json.dumps(audit[0]["detail"])
        directory = store.directory("qingpu")
    out = tmp_path / "clerks.json"
    out.write_text(directory.model_dump_json())
    # the terminal: the directory from the file, the enrolled badge signs Li in
    terminal = SignIn(ClerkDirectory.model_validate_json(out.read_text()))
    got = terminal.badge(1_000, "0012345678")
    assert got.signal is Signal.SIGNED_IN
    (draft,) = got.drafts
    assert draft.fields["clerk_id"] == "c-li" and draft.fields["method"] == "badge"
    assert terminal.badge(10_000, "0099999999").signal is Signal.REFUSED


def test_a_transfer_clears_the_credentials(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ww.db'}"
    other_site = make_site(tmp_path / "sites", "zhujiajiao", "青浦区")
    app = create_app(ServerSettings(db_url=db, sites=[EXAMPLE_SITE, other_site], mqtt=None))
    with TestClient(app) as c:
        store, accounts = app.state.store, app.state.accounts
        accounts.add_user("root", "Root-pass-2026!", "district_admin", "all")
        store.add_clerk("c-li", "李敏", "qingpu")
        store.set_credentials("c-li", "qingpu", badges=["77"], pin=None, by="t")
        csrf = log_in(c, "root", "Root-pass-2026!")
        other = "zhujiajiao"
        r = c.post(
            "/api/clerks/c-li/transfer", json={"site": other}, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 200, r.text
        assert store.directory("qingpu").clerks == ()
        assert store.directory(other).clerks == ()
