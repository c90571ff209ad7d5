"""HTTP API and the live page. ``create_app(settings)``: nothing happens at import."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from agent.config import load_site
from server.api.models import CaseClose, ClerkIn, HelpdeskKpiIn, SignIn
from server.ingest import Ingest, IngestSettings
from server.metrics.assessment import PassThresholds, probation, verdict
from server.metrics.measures import GroupBy, Scope, compute, smile_star_ranking
from server.metrics.periods import period_bounds
from server.store.db import Store


@dataclass
class ServerSettings:
    db_url: str = "sqlite:///var/warmwindow.db"
    sites: list[Path] = field(default_factory=list)
    mqtt: IngestSettings | None = field(default_factory=IngestSettings)
    thresholds: PassThresholds = field(default_factory=PassThresholds)
    timezone: str = "Asia/Shanghai"


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


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items()}


def create_app(settings: ServerSettings) -> FastAPI:
    store = Store(settings.db_url)
    hub = Hub()

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
        try:
            yield
        finally:
            if ingest is not None:
                await asyncio.to_thread(ingest.stop)
            store.close()

    app = FastAPI(title="WarmWindow aggregator", version="0.1.0", lifespan=lifespan)
    app.state.store = store
    app.state.hub = hub

    static = resources.files("server.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    @app.get("/api/windows")
    def windows(site: str | None = None) -> list[dict[str, Any]]:
        """Every window with availability, last seen and its retained state."""
        return [_jsonable(r) for r in store.windows(site)]

    @app.get("/api/events")
    def latest_events(
        limit: Annotated[int, Query(ge=1, le=500)] = 50, site: str | None = None
    ) -> list[dict[str, Any]]:
        """The most recently received events, newest first."""
        return [_jsonable(r) for r in store.latest_events(limit, site)]

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        """Stored events and rejected messages by reason."""
        ingest: Ingest | None = app.state.ingest
        return {
            "events": store.event_count(),
            "rejected": store.reject_counts(),
            "ingest_connected": bool(ingest and ingest.stats.connected),
        }

    @app.get("/api/stream", include_in_schema=False)
    async def stream(request: Request) -> StreamingResponse:
        """Server-sent events: one JSON message per stored event or device change."""

        async def gen() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            async for msg in hub.stream():
                if await request.is_disconnected():
                    break
                if msg is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"data: {json.dumps(msg, ensure_ascii=False)}\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    def bounds(period: str) -> tuple[int, int]:
        try:
            return period_bounds(period, settings.timezone)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/api/measures")
    def measures(
        period: str,
        district: str | None = None,
        site: str | None = None,
        window: str | None = None,
        clerk_id: str | None = None,
        group_by: GroupBy | None = None,
    ) -> dict[str, Any]:
        """Compliance and satisfaction for a scope and period (day, month or quarter)."""
        start, end = bounds(period)
        scope = Scope(district, site, window, clerk_id)
        result = compute(store.engine, scope, start, end, group_by=group_by)
        return {
            "period": period,
            "groups": {str(k) if k is not None else "all": m.as_dict() for k, m in result.items()},
        }

    @app.get("/api/assessment/{clerk_id}")
    def assessment(clerk_id: str, month: str) -> dict[str, Any]:
        """Monthly pass/fail with the evidence (event ids) behind each failed criterion."""
        bounds(month)
        return verdict(store.engine, clerk_id, month, settings.thresholds, settings.timezone)

    @app.get("/api/probation/{clerk_id}")
    def probation_status(clerk_id: str, month: str) -> dict[str, Any]:
        bounds(month)
        return probation(store.engine, clerk_id, month, settings.thresholds, settings.timezone)

    @app.get("/api/ranking")
    def ranking(
        period: str, site: str | None = None, district: str | None = None, min_sessions: int = 20
    ) -> list[dict[str, Any]]:
        """Smile-star ranking by the Wilson lower bound of exemplary sessions."""
        start, end = bounds(period)
        return smile_star_ranking(
            store.engine, Scope(district, site), start, end, min_sessions=min_sessions
        )

    @app.get("/api/cases")
    def list_cases(status: str | None = None, site: str | None = None) -> list[dict[str, Any]]:
        """Bad-review cases with their 15-working-day due time."""
        return store.list_cases(status, site)

    @app.post("/api/cases/{case_id}/close")
    def close_case(case_id: str, body: CaseClose) -> dict[str, bool]:
        if not store.close_case(case_id, body.note, body.at_ms):
            raise HTTPException(404, "no open case with that id")
        return {"closed": True}

    @app.post("/api/clerks", status_code=201)
    def add_clerk(body: ClerkIn) -> dict[str, str]:
        store.add_clerk(body.clerk_id, body.name, body.site)
        return {"clerk_id": body.clerk_id}

    @app.post("/api/roster", status_code=201)
    def sign_in(body: SignIn) -> dict[str, str]:
        """Which clerk staffs a window from when (sign-in or roster; never faces)."""
        store.sign_in(body.clerk_id, body.site, body.window, body.start_ms, body.end_ms)
        return {"clerk_id": body.clerk_id}

    @app.post("/api/helpdesk/kpis", status_code=201)
    def put_kpis(body: HelpdeskKpiIn) -> dict[str, str]:
        """H-ONLINE: daily figures from the help-desk system."""
        store.put_helpdesk_kpis(
            body.site,
            body.window,
            body.day.isoformat(),
            body.requests,
            body.first_response_within_1min,
            body.resolved,
        )
        return {"day": body.day.isoformat()}

    @app.get("/api/helpdesk")
    def helpdesk(first_day: str, last_day: str, site: str | None = None) -> dict[str, Any]:
        return store.helpdesk_summary(first_day, last_day, site)

    @app.get("/api/gaps")
    def gaps() -> list[dict[str, Any]]:
        """Device sequence numbers never received (outbox cap drops or lost data)."""
        return store.sequence_gaps()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
