"""The aggregator's web app: API, live stream, dashboard pages.

``create_app(settings)`` builds everything; nothing happens at import. The lifespan
migrates the store, registers the configured sites and runs the MQTT ingest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from agent.config import load_site
from server.accounts import Accounts
from server.api import admin, assessment, cases, export, queue, roster, routes
from server.api import outbound as outbound_routes
from server.api import window_settings as window_settings_routes
from server.api.access import AccessDep
from server.api.deps import ServerSettings
from server.api.guard import RefuseControlCharacters
from server.api.schemas import ERRORS, HealthOut
from server.ingest import Ingest
from server.outbound import targets as outbound_targets
from server.outbound.service import Outbound
from server.policy.rows import AlertRow
from server.prometheus import metrics_router
from server.store.db import Store
from server.sweep import Sweeper
from server.tokens import Tokens

__all__ = ["Hub", "ServerSettings", "create_app"]


class Hub:
    """Fans live updates out to every open SSE stream; callable from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[asyncio.Queue[dict[str, Any]]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, msg: dict[str, Any]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fan_out, msg)

    def _fan_out(self, msg: dict[str, Any]) -> None:
        for q in list(self._clients):
            if q.qsize() < 1000:  # a stalled browser must not grow memory forever
                q.put_nowait(msg)

    async def stream(self, heartbeat_s: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Yield messages; None every ``heartbeat_s`` of silence so dead clients are noticed."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._clients.add(q)
        try:
            while True:
                try:
                    yield await asyncio.wait_for(q.get(), heartbeat_s)
                except TimeoutError:
                    yield None
        finally:
            self._clients.discard(q)


def _site_of(msg: dict[str, Any]) -> str | None:
    for key in ("event", "state"):
        if key in msg:
            return str(msg[key]["site"])
    return msg.get("site")


def create_app(settings: ServerSettings) -> FastAPI:
    store = Store(settings.db_url)
    accounts = Accounts(store.engine)
    tokens = Tokens(store.engine)
    hub = Hub()
    # Validated now: a bad outbound file stops the server here, naming file and field.
    outbound = Outbound(store, outbound_targets.load(settings.outbound_file))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.db_url.startswith("sqlite:///"):
            Path(settings.db_url.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        await asyncio.to_thread(store.create)
        for path in settings.sites:
            await asyncio.to_thread(store.register_site, load_site(path))
        hub.bind(asyncio.get_running_loop())
        ingest: Ingest | None = None
        if settings.mqtt is not None:
            ingest = Ingest(store, settings.mqtt)
            ingest.add_listener(hub.publish)
            await asyncio.to_thread(ingest.start)
        app.state.ingest = ingest

        # What the clock causes (overdue cases, silent terminals, cameras that cannot see
        # the clerk), once a minute; every
        # replica may run it: the alerts' ids make a second raise a no-op.
        def announce(raised: list[AlertRow]) -> None:
            for a in raised:
                hub.publish({"type": "alert", "site": a["site"], "alert": a})

        sweeper = Sweeper(store, not_observed=settings.not_observed, on_raised=announce)
        sweeper.start()
        outbound.start()
        try:
            yield
        finally:
            await asyncio.to_thread(outbound.stop)
            await asyncio.to_thread(sweeper.stop)
            if ingest is not None:
                await asyncio.to_thread(ingest.stop)
            store.close()

    app = FastAPI(
        title="WarmWindow aggregator", version="0.1.0", lifespan=lifespan, responses=ERRORS
    )
    from server.api.security import install_security_headers

    app.add_middleware(RefuseControlCharacters)  # a %00 never reaches a query
    install_security_headers(app)  # CSP, nosniff, no-store: every response, /static too
    app.state.store = store
    app.state.accounts = accounts
    app.state.tokens = tokens
    app.state.hub = hub
    app.state.settings = settings
    app.state.ingest = None
    app.state.outbound = outbound
    app.include_router(admin.router)
    app.include_router(routes.router)
    app.include_router(roster.router)
    app.include_router(queue.router)
    app.include_router(export.router)
    app.include_router(assessment.router)
    app.include_router(cases.router)
    app.include_router(outbound_routes.router)
    app.include_router(window_settings_routes.router)

    def metrics_grant(value: str, path: str) -> bool:
        p = tokens.principal(value, "GET", path)
        return p is not None and p.can("metrics")

    # /metrics: the configured static token or a service token granted "metrics"; never open.
    app.include_router(
        metrics_router(
            lambda: app.state.ingest,
            store,
            token=settings.metrics_token,
            authorize=metrics_grant,
            get_deliverer=lambda: outbound.deliverer,
        )
    )

    static = Path(str(resources.files("server.web") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        token = request.cookies.get("ww_session")
        if not token or accounts.principal(token) is None:
            return RedirectResponse("/login")
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/login", include_in_schema=False)
    def login_page() -> FileResponse:
        return FileResponse(static / "login.html")

    @app.get("/api/stream", include_in_schema=False)
    async def stream(request: Request, a: AccessDep) -> StreamingResponse:
        """Server-sent events: one JSON message per stored event or device change, for
        the principal's units only."""
        a.not_clerk()
        p = a.p

        async def gen() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            async for msg in hub.stream():
                if await request.is_disconnected():
                    break
                if msg is None:
                    yield ": keep-alive\n\n"
                    continue
                site = _site_of(msg)
                if site is None or p.sees(site):
                    yield f"data: {json.dumps(msg, ensure_ascii=False)}\n\n"

        return StreamingResponse(
            gen(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    @app.get(
        "/healthz",
        response_model_exclude_unset=True,  # the ingest's keys only when there is one
        responses={503: {"model": HealthOut, "description": "The ingest is stuck."}},
    )
    def healthz(response: Response) -> HealthOut:
        """200 while the ingest makes progress; 503 (status "unhealthy", with the reason)
        when it holds messages and commits nothing, or its writer is not running."""
        ingest: Ingest | None = app.state.ingest
        body: dict[str, Any] = {"status": "ok"}
        if ingest is not None:
            body |= ingest.health().as_dict()
        if body["status"] != "ok":
            response.status_code = 503
        connected = bool(ingest and ingest.stats.connected)
        return HealthOut.model_validate(body | {"ingest_connected": connected})

    return app
