"""The OpenAPI document is the API's contract: every operation documents what it answers.

``documented`` walks a response schema: a model with properties, an array of documented
items, a map of documented values, a scalar or an enum. A route that returns
``dict[str, Any]`` (``{"type": "object", "additionalProperties": true}``) or a bare
``Response`` (``{}``) documents nothing and fails ``test_every_operation_documents_its_answer``.

``response_models`` collects every model an answer reaches (any status, through ``$ref``,
items, maps and unions): each must be closed (``additionalProperties: false``, i.e.
``extra="forbid"``) and say what each of its fields holds (a ``description``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from agent.protocol import RATING_ZH, Rating
from server.accounts import User
from server.api import admin, schemas
from server.api.app import ServerSettings, create_app
from server.metrics.measures import Measures
from tests.conftest import EXAMPLE_SITE

Schema = dict[str, Any]
#: Operations known to document no answer, with the reason; each one is a strict xfail, so
#: it fails the suite once it is typed and the entry must go.
UNDOCUMENTED: dict[tuple[str, str], str] = {}


def documented(schema: Schema, doc: Schema, seen: frozenset[str] = frozenset()) -> bool:
    """Does ``schema`` say what the answer holds?"""
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:  # a recursive model: documented where it is defined
            return True
        name = ref.removeprefix("#/components/schemas/")
        return documented(doc["components"]["schemas"][name], doc, seen | {ref})
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return all(documented(s, doc, seen) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return documented(schema.get("items", {}), doc, seen)
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return documented(extra, doc, seen)
        return bool(schema.get("properties"))
    return kind in ("string", "integer", "number", "boolean", "null") or "enum" in schema


def operations(doc: Schema) -> Iterator[tuple[str, str, Schema]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def response_models(doc: Schema) -> dict[str, Schema]:
    """The component schemas with properties that some operation's answer reaches."""
    components: dict[str, Schema] = doc.get("components", {}).get("schemas", {})
    found: dict[str, Schema] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.removeprefix("#/components/schemas/")
                if name not in found:
                    found[name] = components[name]
                    walk(components[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for _, _, op in operations(doc):
        walk(op.get("responses", {}))
    return {name: s for name, s in found.items() if s.get("type") == "object" and "properties" in s}


def undescribed(schema: Schema) -> list[str]:
    return [name for name, prop in schema["properties"].items() if not prop.get("description")]


def success_schemas(op: Schema) -> list[Schema]:
    """The schemas of the operation's 200 or 201 answer, one per media type."""
    for status in ("200", "201"):
        if status in op["responses"]:
            content = op["responses"][status].get("content", {})
            return [media.get("schema", {}) for media in content.values()]
    return []


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("responses") / "r.db"
    app = create_app(ServerSettings(db_url=f"sqlite:///{db}", sites=[EXAMPLE_SITE], mqtt=None))
    with TestClient(app) as c:
        app.state.accounts.add_user("reader", "reader-pass-1", "readonly", "site:qingpu")
        r = c.post("/api/login", json={"username": "reader", "password": "reader-pass-1"})
        assert r.status_code == 200, r.text
        yield c


@pytest.fixture(scope="module")
def doc(client: TestClient) -> Schema:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def _keys() -> list[Any]:
    app = create_app(ServerSettings(db_url="sqlite://", sites=[], mqtt=None))
    out = []
    for method, path, _ in operations(app.openapi()):
        key = (method, path)
        marks = []
        if key in UNDOCUMENTED:
            marks = [pytest.mark.xfail(reason=UNDOCUMENTED[key], strict=True)]
        out.append(pytest.param(key, marks=marks, id=f"{method} {path}"))
    return out


@pytest.mark.parametrize("key", _keys())
def test_every_operation_documents_its_answer(key: tuple[str, str], doc: Schema) -> None:
    method, path = key
    op = doc["paths"][path][method.lower()]
    found = success_schemas(op)
    assert found, f"{method} {path} documents no 200 or 201 answer"
    for schema in found:
        assert documented(schema, doc), f"{method} {path} answers {schema}: say what it holds"


def test_the_walk_finds_an_untyped_route() -> None:
    """The check above can fail: routes typed loosely are caught, typed ones pass."""
    router = APIRouter()

    @router.get("/loose")
    def loose() -> dict[str, Any]:
        return {}

    @router.get("/loose-list")
    def loose_list() -> list[dict[str, Any]]:
        return []

    @router.get("/typed")
    def typed() -> list[schemas.ClerkOut]:
        return []

    app = FastAPI()
    app.include_router(router)
    doc = app.openapi()
    verdicts = {
        path: all(documented(s, doc) for s in success_schemas(op))
        for _, path, op in operations(doc)
    }
    assert verdicts == {"/loose": False, "/loose-list": False, "/typed": True}
    assert not documented({}, doc)


def _app_doc() -> Schema:
    app = create_app(ServerSettings(db_url="sqlite://", sites=[], mqtt=None))
    return app.openapi()


def test_response_models_are_found(doc: Schema) -> None:
    """The walk reaches the models of every router, nested ones and error answers too."""
    names = set(response_models(doc))
    admin_out = {"LoginOut", "OkOut", "MeOut", "CanOut", "UserOut", "TokenOut", "TokenCreated"}
    assert admin_out <= names
    assert {"ErrorOut", "HallTile", "MeasuresOut", "RatingCounts", "StoodStep"} <= names
    assert not {"LoginIn", "UserIn", "TokenIn"} & names  # request bodies are not answers


def test_every_response_model_is_closed_in_the_document(doc: Schema) -> None:
    """Every answer's model forbids extra keys, so the document lists all a client gets."""
    models = response_models(doc)
    assert [n for n, s in models.items() if s.get("additionalProperties") is not False] == []


def test_every_response_field_is_described(doc: Schema) -> None:
    """A reader of /openapi.json learns what each field holds (unit, who, when)."""
    missing = {n: undescribed(s) for n, s in response_models(doc).items() if undescribed(s)}
    assert missing == {}, "describe these fields"


class Inner(BaseModel):
    x: int


class Loose(BaseModel):
    inner: list[Inner] = Field(description="described, but Inner is not")


class Body(BaseModel):
    z: int


class Strict(schemas.Out):
    """Closed and described."""

    y: int = Field(description="a number")


def test_the_walk_finds_a_loose_model() -> None:
    """The checks above can fail: an open model, or a field without a description, nested
    in an answer, is caught; a closed and described one passes."""

    router = APIRouter()

    @router.get("/loose")
    def loose() -> Loose:
        return Loose(inner=[])

    @router.post("/strict", responses={409: {"model": Strict, "description": "also"}})
    def strict(body: Body) -> dict[str, Strict]:
        return {}

    app = FastAPI(responses=schemas.ERRORS)  # as the app: no FastAPI HTTPValidationError
    app.include_router(router)
    models = response_models(app.openapi())
    assert sorted(models) == ["ErrorOut", "Inner", "Loose", "Strict"]  # not Body: a request
    assert {n: s.get("additionalProperties") is False for n, s in models.items()} == {
        "ErrorOut": True,
        "Inner": False,
        "Loose": False,
        "Strict": True,
    }
    assert {n: undescribed(s) for n, s in models.items()} == {
        "ErrorOut": [],
        "Inner": ["x"],
        "Loose": [],
        "Strict": [],
    }


def test_user_out_is_built_from_the_record_field_by_field() -> None:
    """A field the account record gains (a hash, say) is not answered until ``UserOut``
    documents it; ``UserOut`` has no field the record lacks."""
    record_fields = [f.name for f in dataclasses.fields(User)]
    assert set(admin.UserOut.model_fields) <= set(record_fields)

    @dataclasses.dataclass(frozen=True)
    class Grown(User):
        password_hash: str = "scrypt$00$11"
        sessions: int = 3

    user = Grown("u", "U", "readonly", "site:qingpu", False, None)
    out = admin.UserOut.from_user(user).model_dump()
    assert list(out) == list(admin.UserOut.model_fields)
    assert out == {
        "username": "u",
        "display_name": "U",
        "role": "readonly",
        "scope": "site:qingpu",
        "disabled": False,
        "clerk_id": None,
    }
    row = {**dataclasses.asdict(user), "token_hash": "ab" * 32}
    row |= {"token_id": "abc123def456", "name": "feed", "grants": ["read"], "created_by": "u"}
    row |= {"created_ms": 1, "revoked_ms": None, "last_used_ms": None}
    token = admin.TokenOut.from_row(row).model_dump()
    assert list(token) == list(admin.TokenOut.model_fields)
    assert "token_hash" not in token and "password_hash" not in token


def test_admin_answers_hold_no_secret(tmp_path: Path) -> None:
    """Users and tokens as the API answers them: the documented keys, no hash or value."""
    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'a.db'}", sites=[EXAMPLE_SITE], mqtt=None)
    )
    with TestClient(app) as c:
        app.state.accounts.add_user("root", "root-pass-123", "district_admin", "all")
        r = c.post("/api/login", json={"username": "root", "password": "root-pass-123"})
        assert r.status_code == 200, r.text
        assert list(r.json()) == list(admin.LoginOut.model_fields)
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        made = c.post("/api/tokens", json={"name": "feed", "scope": "all", "grants": ["read"]})
        assert made.status_code == 201, made.text
        assert list(made.json()) == list(admin.TokenCreated.model_fields)
        users = c.get("/api/users")
        tokens = c.get("/api/tokens")
        me = c.get("/api/me")
    assert [list(u) for u in users.json()] == [list(admin.UserOut.model_fields)]
    assert [list(t) for t in tokens.json()] == [list(admin.TokenOut.model_fields)]
    assert list(me.json()) == list(admin.MeOut.model_fields)
    for answer in (users.text, tokens.text, me.text):
        assert "scrypt$" not in answer and "hash" not in answer
        assert made.json()["token"] not in answer


def test_every_response_model_is_closed() -> None:
    """A key a read model adds without a field answers 500 in the tests, never silently."""
    models = [
        m
        for m in vars(schemas).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == schemas.__name__
    ]
    assert len(models) >= 30
    assert [m.__name__ for m in models if m.model_config.get("extra") != "forbid"] == []
    with pytest.raises(ValueError, match="Extra inputs"):
        schemas.ClerkOut.model_validate({"clerk_id": "c", "name": "n", "site": "s", "x": 1})


def test_measures_model_mirrors_the_dataclass() -> None:
    """``MeasuresOut`` has the fields of ``Measures``, in order (so the JSON keeps its order)."""
    fields = [f.name for f in dataclasses.fields(Measures)]
    assert list(schemas.MeasuresOut.model_fields) == fields
    assert list(schemas.RatingCounts.model_fields) == [r.value for r in Rating]
    m = Measures(sessions=3, stand_on_call_rate=0.6667, away_without_sign_min=1.5)
    m.ratings[Rating.DISSATISFIED.value] = 1
    assert schemas.MeasuresOut.of(m).model_dump() == m.as_dict()


def test_meta_gives_the_page_its_facts(client: TestClient) -> None:
    r = client.get("/api/meta")
    assert r.status_code == 200
    meta = r.json()
    assert meta["timezone"] == "Asia/Shanghai"
    assert meta["version"] == client.app.version  # type: ignore[attr-defined]
    assert meta["ratings"] == [
        {"code": r.value, "zh": RATING_ZH[r], "bad": r.is_bad} for r in Rating
    ]
    assert [x["code"] for x in meta["ratings"] if x["bad"]] == [
        "dissatisfied",
        "very_dissatisfied",
    ]


def test_meta_follows_the_configured_time_zone(tmp_path: Path) -> None:
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'z.db'}",
        sites=[EXAMPLE_SITE],
        mqtt=None,
        timezone="Asia/Urumqi",
    )
    app = create_app(settings)
    with TestClient(app) as c:
        app.state.accounts.add_user("reader", "reader-pass-1", "readonly", "site:qingpu")
        assert c.get("/api/meta").status_code == 401
        c.post("/api/login", json={"username": "reader", "password": "reader-pass-1"})
        assert c.get("/api/meta").json()["timezone"] == "Asia/Urumqi"
