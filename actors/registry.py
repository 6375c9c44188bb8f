"""The SessionRegistry: the supervisor of every session actor.

Guarantees (its truth is PostgreSQL plus the named actors that exist, so it can die at any time):
- Every session row has exactly one live actor named `session-<id>` in the namespace; every such actor
  without a row is closed and killed. A reconcile pass enforces both every `reconcile_interval_s`; it
  catches errors per session and never dies.
- Actor creations are staggered at `reload_per_s` (a fleet of whatsmeow clients reconnecting at once gets
  cut off; Ray starts workers at ~1-2/s on 2 cores anyway). The first pass after the registry starts is
  the cold reload: paired sessions first, progress logged.
- Placement: `SPREAD` over the nodes that advertise the `wa_session` resource, one unit per session,
  so a node never holds more sessions than it advertises. A dead process or a lost node is Ray's to
  restart (`max_restarts=-1`); the session resumes from PostgreSQL with its stored device, no scan.
  An actor Ray gave up on (failed creation, dead for good) has no name any more and is created anew on
  the next pass; one that stops answering pings for `unresponsive_passes` passes is killed and recreated.
- Sessions never depend on the registry: killing it changes nothing for them; restarted by Ray, it
  rebuilds its picture from the named actors and PostgreSQL.

Idempotent calls: `ensure_session` (creates at most one actor), `destroy_session` (a missing actor or row
is not an error), `reconcile`, `placements`, `where`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.actor import SessionActor
from actors.config import Settings, asyncpg_dsn
from actors.domain import Placement
from actors.errors import SessionNotFound
from actors.ids import actor_name, session_id_of_actor
from actors.session import SessionConfig
from actors.tasks import TaskGroup
from persistence import repo
from persistence.db import create_engine, session_factory

log = logging.getLogger(__name__)

REGISTRY_NAME = "session-registry"
CAPACITY_RESOURCE = "wa_session"
PING_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    database_dsn: str
    namespace: str
    session: SessionConfig
    reload_per_s: float = 2.0
    reconcile_interval_s: float = 10.0
    unresponsive_passes: int = 3


def registry_config(settings: Settings) -> RegistryConfig:
    """The registry's and sessions' configuration from fully resolved Settings (URLs set)."""
    from persistence.migrate import auth_dsn, sim_dsn

    if not settings.database_url or not settings.redis_url:
        raise ValueError("DATABASE_URL and REDIS_URL must be resolved before starting the registry")
    dsn = asyncpg_dsn(settings.database_url)
    simulated = settings.wa_backend == "simulated"
    session = SessionConfig(
        backend=settings.wa_backend.value,
        database_dsn=dsn,
        auth_dsn=sim_dsn(settings.database_url) if simulated else auth_dsn(settings.database_url),
        redis_url=settings.redis_url,
        qr_max_rounds=settings.qr_max_rounds,
        connect_timeout_s=settings.connect_timeout_s,
        max_media_bytes=settings.max_media_bytes,
        qr_first_s=settings.sim_qr_first_s,
        qr_next_s=settings.sim_qr_next_s,
        qr_codes=settings.sim_qr_codes,
    )
    return RegistryConfig(
        database_dsn=dsn,
        namespace=settings.ray_namespace,
        session=session,
        reload_per_s=settings.session_reload_per_s,
        reconcile_interval_s=settings.reconcile_interval_s,
    )


def ensure_registry(settings: Settings) -> ActorHandle[Any]:
    """The running registry, created if missing (a running one keeps the configuration it started with)."""
    return start_registry(registry_config(settings))


def start_registry(config: RegistryConfig) -> ActorHandle[Any]:
    remote: Any = ray.remote(SessionRegistry)
    handle: ActorHandle[Any] = remote.options(
        name=REGISTRY_NAME,
        namespace=config.namespace,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        get_if_exists=True,
    ).remote(config)
    return handle


def get_registry(namespace: str) -> ActorHandle[Any]:
    return ray.get_actor(REGISTRY_NAME, namespace=namespace)


@dataclass(slots=True)
class _Pacer:
    """Spaces actor creations `1 / rate` seconds apart."""

    rate: float
    _next: float = field(default=0.0)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + 1.0 / self.rate
        if delay > 0:
            await asyncio.sleep(delay)


class SessionRegistry:
    def __init__(self, config: RegistryConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._config = config
        self._pacer = _Pacer(config.reload_per_s)
        self._tasks = TaskGroup("registry")
        self._misses: dict[str, int] = {}
        self._creating: set[str] = set()
        self._created: deque[tuple[str, float]] = deque(maxlen=1000)
        self._passes = 0
        self._engine = create_engine(
            config.database_dsn, pool_size=2, max_overflow=2, application_name="registry"
        )
        self._db = session_factory(self._engine)
        self._tasks.spawn(self._loop(), "reconcile loop")

    # ------------------------------------------------------------------ public calls

    async def ensure_session(self, session_id: str) -> None:
        """Create the session's actor if it has none (idempotent); returns once it is scheduled."""
        self._create(session_id)

    async def destroy_session(self, session_id: str) -> bool:
        """Unlink, stop and forget a session: actor closed and killed, row and keys deleted. Idempotent."""
        handle = self._handle(session_id)
        if handle is not None:
            try:
                await asyncio.wait_for(handle.close.remote(True), 15.0)
            except Exception:
                log.warning(
                    "registry: session %s did not close cleanly; killing it", session_id, exc_info=True
                )
            ray.kill(handle, no_restart=True)
        existed = True
        async with self._db() as db:
            try:
                await repo.delete_session(db, session_id)
            except SessionNotFound:
                existed = False
        self._misses.pop(session_id, None)
        log.info("registry: session %s destroyed", session_id)
        return existed

    async def where(self, session_id: str) -> Placement:
        handle = self._handle(session_id)
        if handle is None:
            return Placement(session_id, None, None, None, alive=False)
        return await self._ping(session_id, handle)

    async def placements(self) -> list[Placement]:
        handles = self._session_handles()
        return list(await asyncio.gather(*(self._ping(sid, h) for sid, h in handles.items())))

    async def reconcile(self) -> dict[str, int]:
        """One pass: create what is missing, stop what has no row, replace what stopped answering."""
        async with self._db() as db:
            rows = await repo.sessions_to_run(db)
        wanted = [r.id for r in rows]
        running = self._session_handles()
        created = stopped = replaced = 0
        missing = [sid for sid in wanted if sid not in running and sid not in self._creating]
        if missing:
            log.info("registry: %d of %d sessions have no actor; starting them", len(missing), len(wanted))
        for sid in missing:
            self._create(sid)
            created += 1
        for sid in set(running) - set(wanted):
            try:
                await self._stop_orphan(sid, running[sid])
                stopped += 1
            except Exception:
                log.exception("registry: stopping orphan session %s failed", sid)
        pings = await asyncio.gather(*(self._ping(sid, running[sid]) for sid in wanted if sid in running))
        for placement in pings:
            sid = placement.session_id
            if placement.alive:
                self._misses.pop(sid, None)
                continue
            self._misses[sid] = self._misses.get(sid, 0) + 1
            if self._misses[sid] >= self._config.unresponsive_passes:
                log.warning(
                    "registry: session %s unresponsive for %d passes; replacing it", sid, self._misses[sid]
                )
                ray.kill(running[sid], no_restart=True)
                self._misses.pop(sid, None)
                replaced += 1
        return {"wanted": len(wanted), "created": created, "stopped": stopped, "replaced": replaced}

    async def creations(self) -> list[tuple[str, float]]:
        """The last 1000 actors this registry created: (session id, unix time), oldest first."""
        return list(self._created)

    async def ready(self) -> int:
        """Number of reconcile passes completed (callers wait for >= 1 after a cold start)."""
        return self._passes

    # ------------------------------------------------------------------ internals

    async def _loop(self) -> None:
        while True:
            try:
                stats = await self.reconcile()
                self._passes += 1
                if stats["created"] or stats["stopped"] or stats["replaced"]:
                    log.info("registry: reconcile %s", stats)
            except Exception:
                log.exception("registry: reconcile pass failed; retrying")
            await asyncio.sleep(self._config.reconcile_interval_s)

    def _create(self, session_id: str) -> None:
        if session_id in self._creating:
            return
        self._creating.add(session_id)
        self._tasks.spawn(self._create_paced(session_id), f"create {session_id}")

    async def _create_paced(self, session_id: str) -> None:
        try:
            if self._handle(session_id) is not None:
                return
            await self._pacer.wait()
            self._created.append((session_id, time.time()))
            create_session_actor(self._config, session_id)
            log.info("registry: session %s actor created (%d so far)", session_id, len(self._created))
        finally:
            self._creating.discard(session_id)

    async def _stop_orphan(self, session_id: str, handle: ActorHandle[Any]) -> None:
        log.info("registry: session %s has no row; stopping its actor", session_id)
        try:
            await asyncio.wait_for(handle.close.remote(True), 15.0)
        except Exception:
            log.warning("registry: orphan %s did not close cleanly", session_id, exc_info=True)
        ray.kill(handle, no_restart=True)

    async def _ping(self, session_id: str, handle: ActorHandle[Any]) -> Placement:
        try:
            placement: Placement = await asyncio.wait_for(handle.ping.remote(), PING_TIMEOUT_S)
            return placement
        except Exception:
            return Placement(session_id, None, None, None, alive=False)

    def _handle(self, session_id: str) -> ActorHandle[Any] | None:
        try:
            return ray.get_actor(actor_name(session_id), namespace=self._config.namespace)
        except ValueError:
            return None

    def _session_handles(self) -> dict[str, ActorHandle[Any]]:
        names = ray.util.list_named_actors(all_namespaces=True)
        handles: dict[str, ActorHandle[Any]] = {}
        for entry in names:
            if entry["namespace"] != self._config.namespace:
                continue
            sid = session_id_of_actor(entry["name"])
            if sid is None:
                continue
            handle = self._handle(sid)
            if handle is not None:
                handles[sid] = handle
        return handles


@functools.cache
def _remote_session_actor() -> Any:
    return ray.remote(SessionActor)


def session_actor_options(config: RegistryConfig, session_id: str) -> dict[str, Any]:
    """How every session actor is created: detached, named, restarted forever, placed by capacity."""
    return {
        "name": actor_name(session_id),
        "namespace": config.namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": 0,
        "resources": {CAPACITY_RESOURCE: 1},
        "scheduling_strategy": "SPREAD",
        "get_if_exists": True,
    }


def create_session_actor(config: RegistryConfig, session_id: str) -> ActorHandle[Any]:
    """Create (or find: `get_if_exists`) the detached actor of one session."""
    handle: ActorHandle[Any] = (
        _remote_session_actor()
        .options(**session_actor_options(config, session_id))
        .remote(session_id, config.session)
    )
    return handle
