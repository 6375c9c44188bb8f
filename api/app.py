"""The FastAPI application: `create_app(settings)`: lifespan resources, `GET /health`, and the routes."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from actors.supervision import Writes
from api import ray_driver
from api.frontend import install, serving
from api.handles import SessionActors
from api.unavailable import ray_unavailable
from kernel.outages import refusals
from kernel.settings import Settings
from persistence import repo
from persistence.db import create_engine, read_only, session_factory

log = logging.getLogger(__name__)

T = TypeVar("T")

# Each component gets this long to answer /health; they are checked concurrently.
HEALTH_TIMEOUT_S = 2.0

ComponentState = Literal["ok", "error"]


class SessionCountsOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    total: int
    connected: int


class ComponentsOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    database: ComponentState
    redis: ComponentState
    ray: ComponentState
    # Live events: this process's hub reads the event log and is not behind it (`api.hub`).
    events: ComponentState


class PendingOut(BaseModel):
    """Sessions whose actor waits for a node with a free `wa_session` unit (or a restart)."""

    model_config = ConfigDict(frozen=True, serialize_by_alias=True, validate_by_name=True)

    count: int
    oldest_seconds: float | None = Field(alias="oldestSeconds")
    stalled: int = Field(
        0,
        description="Sessions waiting to be placed, or placed and not answering, for longer than a minute:"
        " `status` is `degraded` while there are any",
    )


class WritesOut(BaseModel):
    """Whether PostgreSQL takes writes, and the writes sessions hold that it has not stored."""

    model_config = ConfigDict(frozen=True)

    # "refused": it answers but takes no writes (read-only, full): sessions keep theirs spooled meanwhile.
    database: Literal["ok", "refused", "error"]
    refused: list[str] = Field(description="Why it refuses: read_only, no_resources")
    # Null when the registry did not answer within HEALTH_TIMEOUT_S.
    spooled: int | None = Field(description="Writes sessions hold on their disk, not yet in PostgreSQL")
    failed: int | None = Field(
        description="Writes PostgreSQL could not apply, kept aside until `whatsapp-bridge spool replay`"
    )


class HealthOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "degraded"]
    sessions: SessionCountsOut
    components: ComponentsOut
    # Null when the registry did not answer within HEALTH_TIMEOUT_S.
    pending: PendingOut | None = None
    writes: WritesOut | None = None


class RayProbe:
    """Asks the GCS whether a node is alive, in a daemon thread.

    A Ray call can block far longer than any timeout of ours when the GCS is gone, and cannot be
    cancelled: the probe runs at most one such call at a time, reports `error` while it hangs, and
    never keeps the process from exiting.
    """

    def __init__(self) -> None:
        self._pending: Future[bool] | None = None

    async def check(self, timeout: float) -> bool:
        if self._pending is None or self._pending.done():
            self._pending = Future()
            threading.Thread(target=_settle, args=(self._pending,), name="ray-health", daemon=True).start()
        # Shielded: a timeout here must not cancel the call that is still running in the thread.
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._pending)), timeout)


def _settle(future: Future[bool]) -> None:
    try:
        future.set_result(_ray_alive())
    except Exception as err:
        future.set_exception(err)


def _ray_alive() -> bool:
    import ray  # lazily: the API is usable (and testable) without Ray loaded

    if ray_unavailable() is not None:  # not connected, or being connected again: do not touch Ray
        return False
    driver = ray_driver.current()
    if driver is not None:  # its probe, not ray.nodes(): that aborts the process on a replaced head
        return driver.healthy()
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]  # untyped in Ray 2.60
    return any(node.get("Alive") for node in nodes)


@dataclass(slots=True)
class AppState:
    """What the lifespan opens and closes; routes reach it through `state(request)`."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    ray_probe: RayProbe = field(default_factory=RayProbe)
    # Last known health per component: a change is logged once, not on every poll.
    healthy: dict[str, bool] = field(default_factory=dict)

    def note(self, component: str, *, ok: bool, why: str = "") -> None:
        if self.healthy.get(component, True) != ok:
            if ok:
                log.info("%s is available again", component)
            else:
                log.warning("%s is unavailable (%s)", component, why)
        self.healthy[component] = ok

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


def state(request: Request) -> AppState:
    app_state: AppState = request.app.state.bridge
    return app_state


State = Annotated[AppState, Depends(state)]


def _open_state(settings: Settings) -> AppState:
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("create_app needs DATABASE_URL and REDIS_URL (the CLI fills them in)")
    engine = create_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=HEALTH_TIMEOUT_S)
    return AppState(settings=settings, engine=engine, sessions=session_factory(engine), redis=redis)


async def _bounded(coro: Awaitable[T], name: str, app_state: AppState) -> T | None:
    """The result, or None when the component failed or did not answer in time."""
    try:
        result = await asyncio.wait_for(coro, HEALTH_TIMEOUT_S)
    except Exception as err:
        app_state.note(name, ok=False, why=type(err).__name__)
        return None
    app_state.note(name, ok=True)
    return result


async def _count_sessions(app_state: AppState) -> tuple[repo.SessionCounts, bool]:
    """The session counts, and whether the database refuses writes."""
    async with app_state.sessions() as db:
        return await repo.session_counts(db), await read_only(db)


async def _ping_redis(app_state: AppState) -> bool:
    return bool(await app_state.redis.ping())


async def _ray_ok(app_state: AppState) -> bool:
    if await app_state.ray_probe.check(HEALTH_TIMEOUT_S):
        return True
    raise ConnectionError("no live Ray node")


def _component(ok: bool) -> ComponentState:
    return "ok" if ok else "error"


def _events_ok(request: Request, app_state: AppState) -> bool:
    resources = getattr(request.app.state, "api", None)
    ok = resources is not None and bool(resources.hub.events_ok)
    app_state.note("live events", ok=ok, why="the event hub is not reading the event log")
    return ok


async def health(app_state: State, request: Request) -> HealthOut:
    """Each backing service checked concurrently, each within HEALTH_TIMEOUT_S: health never hangs."""
    database, redis_ok, ray_ok, pending, journals = await asyncio.gather(
        _bounded(_count_sessions(app_state), "database", app_state),
        _bounded(_ping_redis(app_state), "redis", app_state),
        _bounded(_ray_ok(app_state), "ray", app_state),
        _pending(request),
        _journals(request),
    )
    db_ok = database is not None
    counts, read_only_now = database or (None, False)
    writes = _writes(db_ok, read_only_now, journals)
    app_state.note("database writes", ok=writes.database != "refused", why=", ".join(writes.refused))
    events_ok = _events_ok(request, app_state)
    components = ComponentsOut(
        database=_component(db_ok),
        redis=_component(bool(redis_ok)),
        ray=_component(bool(ray_ok)),
        events=_component(events_ok),
    )
    counts = counts or repo.SessionCounts(total=0, connected=0)
    ok = db_ok and redis_ok and ray_ok and events_ok and writes.database == "ok" and not writes.failed
    ok = ok and not (pending and pending.stalled)
    return HealthOut(
        status="ok" if ok else "degraded",
        sessions=SessionCountsOut(total=counts.total, connected=counts.connected),
        components=components,
        pending=pending,
        writes=writes,
    )


def _writes(db_ok: bool, read_only_now: bool, journals: Writes | None) -> WritesOut:
    """What this process's probe and the sessions' journals (through the registry) say about writes."""
    refused = refusals(journals.refused if journals else (), read_only_now)
    state: Literal["ok", "refused", "error"] = "refused" if refused else "ok"
    return WritesOut(
        database=state if db_ok or refused else "error",
        refused=refused,
        spooled=journals.spooled if journals else None,
        failed=journals.failed if journals else None,
    )


async def _from_registry(request: Request, ask: Callable[[SessionActors], Awaitable[T]]) -> T | None:
    """The registry's answer to `ask`; None if it does not answer in time."""
    resources = getattr(request.app.state, "api", None)
    if resources is None:
        return None
    try:
        # Bounded as a whole: finding the registry's handle can take longer than the call itself.
        return await asyncio.wait_for(ask(resources.actors), HEALTH_TIMEOUT_S)
    except Exception:
        return None


async def _journals(request: Request) -> Writes | None:
    """What the registry last heard from the sessions' journals."""
    return await _from_registry(request, lambda actors: actors.writes(timeout_s=HEALTH_TIMEOUT_S))


async def _pending(request: Request) -> PendingOut | None:
    """What the registry says is waiting for capacity."""
    found = await _from_registry(request, lambda actors: actors.pending(timeout_s=HEALTH_TIMEOUT_S))
    if found is None:
        return None
    oldest = None if found.oldest_s is None else round(found.oldest_s, 1)
    return PendingOut(count=found.count, oldest_seconds=oldest, stalled=found.stalled)


def _build_route_tables(app: FastAPI) -> None:
    """Match a path no route has, which makes FastAPI build every included router's table now.

    It builds them on the first request that reaches them otherwise: ~120 ms of pydantic schema building
    on this machine, paid on the event loop by whichever requests come first after a start (a reconnect
    storm's, in benchmark 10)."""
    scope = {"type": "http", "path": "/\x00", "method": "GET", "root_path": "", "headers": [], "app": app}
    for route in app.router.routes:
        route.matches(scope)


def create_app(settings: Settings) -> FastAPI:
    """The bridge's HTTP application; its lifespan opens the database engine and the Redis client.

    RuntimeError without an admin key: WebSocket tokens and user keys' hashes derive from it, and an
    empty secret would let anyone sign a token."""
    settings.api_key()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app_state = _open_state(settings)
        app.state.bridge = app_state
        try:
            async with serving(app, settings, app_state.sessions):
                _build_route_tables(app)
                yield
        finally:
            await app_state.aclose()

    app = FastAPI(title="WhatsApp bridge", version="0.1.0", lifespan=lifespan)
    app.add_api_route("/health", health, methods=["GET"], response_model=HealthOut, tags=["ops"])
    install(app, settings)
    return app
