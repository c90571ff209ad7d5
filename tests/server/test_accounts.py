"""Accounts over HTTP: sign-in throttling shared by replicas, logout, account and token
administration within the administrator's scope, the password policy."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from server.accounts import THROTTLE, Accounts, check_password
from server.api import admin
from server.api.app import ServerSettings, create_app
from server.store.schema import units
from server.tokens import Tokens
from tests.conftest import EXAMPLE_SITE

T0 = 1_800_000_000_000  # the tests' clock starts here (ms)
MIN = 60_000
ADMIN_PW = "Qingpu-admin-2026"
INSP_PW = "Inspect0r!Lake"
VIEW_PW = "Viewer#Window9"
ROOT_PW = "Root-of-all-77x"
SJ_PW = "Songjiang+Admin5"


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def make_app(db_url: str) -> FastAPI:
    """The aggregator, serving each path once and its session routes from ``admin``."""
    app = create_app(ServerSettings(db_url=db_url, sites=[EXAMPLE_SITE], mqtt=None))
    routes = [rc.original_route for rc in iter_route_contexts(app.routes)]
    paths = [(r.path, m) for r in routes if isinstance(r, APIRoute) for m in r.methods or ()]
    assert len(paths) == len(set(paths)), "a path is served twice"
    mine = {r.endpoint for r in routes if isinstance(r, APIRoute)}
    assert {admin.login, admin.logout, admin.me, admin.list_users} <= mine
    return app


def seed(app: FastAPI, clock: Clock) -> None:
    accounts: Accounts = app.state.accounts
    accounts.clock = clock
    accounts.add_user("admin", ADMIN_PW, "district_admin", "district:青浦区")
    accounts.add_user("insp", INSP_PW, "inspector", "district:青浦区")
    accounts.add_user("viewer", VIEW_PW, "readonly", "site:qingpu")
    accounts.add_user("root", ROOT_PW, "district_admin", "all")
    accounts.add_user("sj-admin", SJ_PW, "district_admin", "district:松江区")
    with app.state.store.engine.begin() as conn:
        conn.execute(
            units.insert().values(
                site="songjiang",
                name="松江区行政服务中心",
                district="松江区",
                unit_kind="district_centre",
                timezone="Asia/Shanghai",
            )
        )


def login(c: TestClient, username: str, password: str) -> Any:
    return c.post("/api/login", json={"username": username, "password": password})


def sign_in(c: TestClient, username: str, password: str) -> str:
    r = login(c, username, password)
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return str(r.cookies.get("ww_session") or c.cookies.get("ww_session"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Iterator[FastAPI]:
    a = make_app(f"sqlite:///{tmp_path / 'accounts.db'}")
    with TestClient(a):
        seed(a, clock)
        yield a


def client(app: FastAPI, stack: ExitStack, address: str = "10.0.0.1") -> TestClient:
    return stack.enter_context(TestClient(app, client=(address, 40000)))


def audit(app: FastAPI) -> list[dict[str, Any]]:
    return list(reversed(app.state.accounts.audit_entries(1000)))


# ----------------------------------------------------------------- throttling


def test_account_locks_after_repeated_wrong_passwords_then_expires(
    pg_url: str, clock: Clock
) -> None:
    app = make_app(pg_url)
    with ExitStack() as stack:
        c = client(app, stack)
        seed(app, clock)
        for _ in range(THROTTLE.user_failures):
            r = login(c, "insp", "not-the-password")
            assert r.status_code == 401, r.text
            clock.ms += 1000
        # the N+1th attempt is refused without a password check, right password or not
        locked = login(c, "insp", INSP_PW)
        assert locked.status_code == 429
        assert locked.json()["detail"] == "too many failed sign-ins; try again in 15 minutes"
        assert 0 < int(locked.headers["Retry-After"]) <= THROTTLE.lock_s
        assert "ww_session" not in locked.cookies
        # another account from the same address, below the address limit, still works
        assert login(c, "viewer", VIEW_PW).status_code == 200
        clock.ms += 10 * MIN
        r = login(c, "insp", INSP_PW)
        assert r.status_code == 429 and "try again in 5 minutes" in r.json()["detail"]
        # the lock expires; a successful sign-in resets the account's count
        clock.ms += 6 * MIN
        assert login(c, "insp", INSP_PW).status_code == 200
        for _ in range(THROTTLE.user_failures - 1):
            assert login(c, "insp", "wrong-again").status_code == 401
        assert login(c, "insp", INSP_PW).status_code == 200
        assert login(c, "insp", "wrong-once-more").status_code == 401
        assert login(c, "insp", INSP_PW).status_code == 200
    locks = [e for e in audit(app) if e["action"] == "login_locked"]
    assert [(e["username"], e["target"]) for e in locks] == [("insp", "user:insp")]
    assert locks[0]["detail"]["failures"] == THROTTLE.user_failures
    app.state.store.close()


def test_failures_spread_over_the_window_do_not_lock(app: FastAPI, clock: Clock) -> None:
    with ExitStack() as stack:
        c = client(app, stack)
        for _ in range(3 * THROTTLE.user_failures):
            assert login(c, "insp", "wrong").status_code == 401
            clock.ms += THROTTLE.window_s * 1000 // (THROTTLE.user_failures - 1) + 1
        assert login(c, "insp", INSP_PW).status_code == 200


def test_address_limit_stops_a_spray_over_many_accounts(app: FastAPI, clock: Clock) -> None:
    with ExitStack() as stack:
        sprayer = client(app, stack, "203.0.113.7")
        names = ["insp", "viewer", "admin", "nobody", "root"]
        for i in range(THROTTLE.address_failures):
            # never more than the account limit for any one name: only the address counts up
            name = names[i % len(names)] if i < 15 else f"guess{i}"
            r = login(sprayer, name, f"Spring{i}!")
            assert r.status_code == 401, (i, r.text)
        r = login(sprayer, "viewer", VIEW_PW)  # even a right password, from there
        assert r.status_code == 429 and "Retry-After" in r.headers
        # the accounts themselves are not locked: from another address they sign in
        assert login(client(app, stack, "198.51.100.2"), "viewer", VIEW_PW).status_code == 200
        clock.ms += THROTTLE.lock_s * 1000
        assert login(sprayer, "viewer", VIEW_PW).status_code == 200
    locks = [e["target"] for e in audit(app) if e["action"] == "login_locked"]
    assert locks == ["addr:203.0.113.7"]


def test_unknown_user_names_count_too(app: FastAPI) -> None:
    with ExitStack() as stack:
        c = client(app, stack)
        for _ in range(THROTTLE.user_failures):
            assert login(c, "ghost", "whatever-it-is").status_code == 401
        assert login(c, "ghost", "whatever-it-is").status_code == 429
        assert login(c, "insp", INSP_PW).status_code == 200


def test_replicas_share_the_count(pg_url: str, clock: Clock) -> None:
    one, two = make_app(pg_url), make_app(pg_url)
    with ExitStack() as stack:
        a = client(one, stack, "192.0.2.10")
        b = client(two, stack, "192.0.2.10")
        seed(one, clock)
        two.state.accounts.clock = clock
        for i in range(THROTTLE.user_failures):
            replica = a if i % 2 == 0 else b
            assert login(replica, "insp", "guess-" + str(i)).status_code == 401
        # neither replica alone saw five failures; together they did
        assert login(a, "insp", INSP_PW).status_code == 429
        assert login(b, "insp", INSP_PW).status_code == 429
        # a success on one replica resets the count that the other reads
        clock.ms += THROTTLE.lock_s * 1000
        assert login(b, "insp", INSP_PW).status_code == 200
        for _ in range(THROTTLE.user_failures - 1):
            assert login(a, "insp", "wrong").status_code == 401
        assert login(b, "insp", INSP_PW).status_code == 200
    one.state.store.close()
    two.state.store.close()


# ----------------------------------------------------------------- sessions


def test_logout_ends_the_session_on_the_server(app: FastAPI) -> None:
    with ExitStack() as stack:
        c = client(app, stack)
        cookie = sign_in(c, "insp", INSP_PW)
        me = c.get("/api/me").json()
        assert me["username"] == "insp" and me["clerk_id"] is None
        assert me["sites"] == ["qingpu"] and me["csrf"] == c.headers["X-CSRF-Token"]
        assert me["can"] == {
            "acknowledge": True,
            "close_case": True,
            "roster": False,
            "kpis": False,
            "users": False,
            "finding": True,
            "sign_off": True,
            "probation": True,
            "thresholds": False,
            "appeal": False,
            "resolve_appeal": False,
            "outbound": False,
            "window_settings": False,
        }
        r = c.post("/api/logout")
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert c.get("/api/me").status_code == 401
        # the old cookie, replayed from anywhere, is dead
        replay = client(app, stack, "10.9.9.9")
        assert replay.get("/api/me", headers={"Cookie": f"ww_session={cookie}"}).status_code == 401
    assert [e["action"] for e in audit(app)][-2:] == ["login", "logout"]


def test_login_sets_a_strict_httponly_cookie(app: FastAPI) -> None:
    with ExitStack() as stack:
        r = login(client(app, stack), "viewer", VIEW_PW)
        assert r.status_code == 200 and set(r.json()) == {"username", "role", "csrf"}
        cookie = r.headers["set-cookie"].lower()
        assert "ww_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


# ----------------------------------------------------------------- accounts


def test_disable_reset_password_and_role_end_sessions(app: FastAPI) -> None:
    with ExitStack() as stack:
        boss = client(app, stack)
        sign_in(boss, "admin", ADMIN_PW)
        body = {"username": "li", "password": "Li-Min@Window3", "role": "inspector"}
        weak = boss.post("/api/users", json=body | {"password": "short", "scope": "site:qingpu"})
        assert weak.status_code == 422 and "12 characters" in weak.text
        created = boss.post("/api/users", json=body | {"scope": "site:qingpu"})
        assert created.status_code == 201, created.text
        assert created.json()["role"] == "inspector" and "password" not in created.text
        again = boss.post("/api/users", json=body | {"scope": "site:qingpu"})
        assert again.status_code == 409

        li = client(app, stack, "10.0.0.2")
        sign_in(li, "li", "Li-Min@Window3")
        assert li.get("/api/me").status_code == 200
        r = boss.post("/api/users/li/disable")
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert li.get("/api/me").status_code == 401
        assert login(li, "li", "Li-Min@Window3").status_code == 401
        assert boss.post("/api/users/li/enable").json()["disabled"] is False
        sign_in(li, "li", "Li-Min@Window3")

        bad = boss.post("/api/users/li/password", json={"password": "Password-2026!"})
        assert bad.status_code == 422 and "too common" in bad.text
        r = boss.post("/api/users/li/password", json={"password": "Fresh-Start-2027"})
        assert r.status_code == 200
        assert li.get("/api/me").status_code == 401
        assert login(li, "li", "Li-Min@Window3").status_code == 401
        sign_in(li, "li", "Fresh-Start-2027")

        r = boss.post("/api/users/li/role", json={"role": "centre_manager", "scope": "site:qingpu"})
        assert r.status_code == 200 and r.json()["role"] == "centre_manager"
        assert li.get("/api/me").status_code == 401
        sign_in(li, "li", "Fresh-Start-2027")
        assert li.get("/api/me").json()["role"] == "centre_manager"
        bad_role = boss.post("/api/users/li/role", json={"role": "god", "scope": "site:qingpu"})
        assert bad_role.status_code == 422

        assert boss.post("/api/users/admin/disable").status_code == 409  # not yourself
        assert boss.get("/api/me").status_code == 200

        # without the session's CSRF token, or without the permission: refused
        token = boss.headers.pop("X-CSRF-Token")
        assert boss.post("/api/users/li/disable").status_code == 403
        boss.headers["X-CSRF-Token"] = token
        assert li.post("/api/users/insp/disable").status_code == 403
        assert li.get("/api/users").status_code == 403

    entries = [e for e in audit(app) if e["action"].startswith("user_")]
    assert [(e["username"], e["action"], e["target"]) for e in entries] == [
        ("admin", "user_add", "li"),
        ("admin", "user_disable", "li"),
        ("admin", "user_enable", "li"),
        ("admin", "user_password", "li"),
        ("admin", "user_role", "li"),
    ]
    assert entries[1]["detail"]["sessions_ended"] == 1
    assert entries[4]["detail"]["was"] == {"role": "inspector", "scope": "site:qingpu"}
    dumped = json.dumps(audit(app), ensure_ascii=False)
    assert "Fresh-Start-2027" not in dumped and "Li-Min@Window3" not in dumped


def test_a_district_admin_sees_and_manages_only_their_district(app: FastAPI) -> None:
    with ExitStack() as stack:
        qp = client(app, stack)
        sign_in(qp, "admin", ADMIN_PW)
        listed = {u["username"] for u in qp.get("/api/users").json()}
        assert listed == {"admin", "insp", "viewer"}
        assert all("hash" not in k for u in qp.get("/api/users").json() for k in u)
        for path in ("disable", "enable"):
            assert qp.post(f"/api/users/sj-admin/{path}").status_code == 404
            assert qp.post(f"/api/users/root/{path}").status_code == 404
        pw = {"password": "Another-Good-One-1"}
        assert qp.post("/api/users/sj-admin/password", json=pw).status_code == 404
        assert qp.post("/api/users/nobody/disable").status_code == 404
        wider = qp.post("/api/users/insp/role", json={"role": "inspector", "scope": "all"})
        assert wider.status_code == 403
        other = {"role": "inspector", "scope": "district:松江区"}
        assert qp.post("/api/users/insp/role", json=other).status_code == 403
        new = {"username": "zz", "password": "Zz-Window-Pass-1", "role": "readonly"}
        assert qp.post("/api/users", json=new | {"scope": "all"}).status_code == 403
        assert qp.post("/api/users", json=new | {"scope": "site:songjiang"}).status_code == 403
        assert qp.post("/api/users", json=new | {"scope": "site:qingpu"}).status_code == 201

        root = client(app, stack, "10.0.0.3")
        sign_in(root, "root", ROOT_PW)
        everyone = {u["username"] for u in root.get("/api/users").json()}
        assert everyone == {"admin", "insp", "viewer", "root", "sj-admin", "zz"}
        assert root.post("/api/users/sj-admin/disable").status_code == 200

        sj = client(app, stack, "10.0.0.4")
        assert login(sj, "sj-admin", SJ_PW).status_code == 401  # disabled
        root.post("/api/users/sj-admin/enable")
        sign_in(sj, "sj-admin", SJ_PW)
        assert {u["username"] for u in sj.get("/api/users").json()} == {"sj-admin"}
        assert sj.post("/api/users/insp/disable").status_code == 404


def test_service_tokens_within_the_admins_scope(app: FastAPI) -> None:
    tokens = Tokens(app.state.store.engine)
    with ExitStack() as stack:
        root = client(app, stack)
        sign_in(root, "root", ROOT_PW)
        sj_token = {"name": "sj-queue", "scope": "district:松江区", "grants": ["queue"]}
        sj = root.post("/api/tokens", json=sj_token)
        assert sj.status_code == 201

        qp = client(app, stack, "10.0.0.5")
        sign_in(qp, "admin", ADMIN_PW)
        wide = {"name": "everything", "scope": "all", "grants": ["read"]}
        assert qp.post("/api/tokens", json=wide).status_code == 403
        bad = {"name": "feed", "scope": "site:qingpu", "grants": ["sudo"]}
        assert qp.post("/api/tokens", json=bad).status_code == 422
        made = qp.post(
            "/api/tokens", json={"name": "qp-feed", "scope": "site:qingpu", "grants": ["kpis"]}
        )
        assert made.status_code == 201
        token_id, value = made.json()["token_id"], made.json()["token"]
        assert value.startswith(f"wwt_{token_id}_")
        p = tokens.principal(value, "GET", "/api/units")
        assert p is not None and p.sites == frozenset({"qingpu"}) and p.can("kpis")

        # a token is no person: it reads who it is, but manages no accounts, signs nothing out
        bearer = client(app, stack, "10.0.0.7")
        bearer.headers["Authorization"] = f"Bearer {value}"
        me = bearer.get("/api/me").json()
        assert (me["username"], me["role"], me["csrf"]) == (f"token:{token_id}", "service", None)
        assert me["sites"] == ["qingpu"] and me["can"]["kpis"] and not me["can"]["users"]
        assert bearer.get("/api/users").status_code == 403
        assert bearer.get("/api/tokens").status_code == 403
        assert bearer.post("/api/users/insp/disable").status_code == 403
        assert bearer.post("/api/logout").json() == {"ok": False}
        assert bearer.get("/api/me").status_code == 200

        listed = qp.get("/api/tokens").json()
        assert [t["token_id"] for t in listed] == [token_id]
        assert listed[0]["created_by"] == "admin" and "token" not in listed[0]
        assert value not in qp.get("/api/tokens").text
        assert qp.post(f"/api/tokens/{sj.json()['token_id']}/revoke").status_code == 404
        revoked = qp.post(f"/api/tokens/{token_id}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_ms"] is not None
        assert qp.post(f"/api/tokens/{token_id}/revoke").status_code == 409
        assert tokens.principal(value) is None
        assert len(root.get("/api/tokens").json()) == 2

        viewer = client(app, stack, "10.0.0.6")
        sign_in(viewer, "viewer", VIEW_PW)
        assert viewer.get("/api/tokens").status_code == 403
    actions = [(e["username"], e["action"]) for e in audit(app) if "token_" in e["action"]]
    assert ("admin", "token_create") in actions and ("admin", "token_revoke") in actions
    assert value not in json.dumps(audit(app), ensure_ascii=False)


# ----------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("Sh0rt-pw", "at least 12"),
        ("alllowercaseonly", ""),  # 16 characters: a passphrase, accepted
        ("lowercase1234", "three of"),
        ("Password1234!", "too common"),
        ("P@ssw0rd-2026", "too common"),
        ("Admin@2026!!", "too common"),
        ("password1234", "three of"),
        ("aaaaaaaaaaaaaaaaaa", "too common"),
        ("xX-Wang.Wei-Xx", "user name"),
        ("Correct-Horse-9", ""),
        ("correct horse battery staple", ""),
    ],
)
def test_password_policy(password: str, why: str) -> None:
    if not why:
        check_password(password, "wang.wei")
        return
    with pytest.raises(ValueError, match=why):
        check_password(password, "wang.wei")


def test_demo_style_random_passwords_pass_the_policy() -> None:
    for _ in range(500):
        check_password(secrets.token_urlsafe(12), "admin")


def test_text_postgresql_cannot_store_is_refused_before_any_query(
    pg_url: str, clock: Clock
) -> None:
    app = make_app(pg_url)
    with ExitStack() as stack:
        c = client(app, stack)
        seed(app, clock)
        assert login(c, "in\x00sp", INSP_PW).status_code == 422
        sign_in(c, "root", ROOT_PW)
        body = {"username": "nul", "password": "Nul-Free-Pass-1", "role": "readonly"}
        for scope in ("district:\x00", "district:a\nb"):
            assert c.post("/api/users", json=body | {"scope": scope}).status_code == 422
        # a control character in the URL never reaches a route (server/api/guard.py)
        assert c.post("/api/users/in%00sp/disable").status_code == 400
        assert c.post("/api/tokens/abc%00/revoke").status_code == 400
        token = {"name": "t", "scope": "district:\x00", "grants": ["read"]}
        assert c.post("/api/tokens", json=token).status_code == 422
        assert c.get("/api/me").status_code == 200
    app.state.store.close()
