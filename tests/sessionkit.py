"""Session state machines without Ray, for tests: the simulated client, real PostgreSQL and Redis, a local
spool, and a recorded process exit in place of `os._exit` (what Ray would restart)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from actors.bus import OUTBOX, OUTBOX_MAX_BYTES, EventBus
from actors.clients import make_client
from actors.session import SessionConfig, SessionCore
from actors.spool import Spool
from actors.writes import WRITES
from kernel.domain import SessionStatus, SessionView
from kernel.settings import asyncpg_dsn
from persistence.session_store import SessionStore
from persistence.stores import PostgresStores
from tests.raykit import eventually, insert_session, session_config


class Exits:
    """Stands in for `os._exit`: records why the process would have been recycled."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.happened = asyncio.Event()

    def __call__(self, why: str) -> None:
        self.reasons.append(why)
        self.happened.set()


Factory = Callable[..., Awaitable[tuple[SessionCore, Exits]]]


@asynccontextmanager
async def session_factory(database_url: str, redis_url: str, spool_dir: Path) -> AsyncIterator[Factory]:
    """Build started sessions; each is closed (without purge) when the block ends."""
    made: list[SessionCore] = []

    async def build(
        sid: str | None = None,
        redis: str | None = None,
        db: str | None = None,
        owner: str | None = None,
        **overrides: object,
    ) -> tuple[SessionCore, Exits]:
        """A session; `db`: another URL for the bridge's tables (the simulated network keeps the test's);
        `owner`: the actor it stands for (default: one per session id, as Ray restarts the same actor)."""
        sid = sid or await insert_session(database_url)
        # A stop with the database cut waits this long for the spool to drain (tests/test_drain.py shows
        # what it keeps with the database up); the default 10 s would only lengthen teardowns.
        overrides.setdefault("close_drain_s", 2.0)
        config: SessionConfig = session_config(database_url, redis or redis_url, **overrides)
        exits = Exits()
        spool_path = spool_dir / f"{sid}.spool"
        outbox_path = spool_dir / f"{sid}.outbox"
        outbox = {"codec": OUTBOX, "max_bytes": OUTBOX_MAX_BYTES}
        session = SessionCore(
            sid,
            config,
            client_factory=lambda options: make_client(config.backend, options, PostgresStores()),
            store=SessionStore(asyncpg_dsn(db) if db else config.database_dsn, sid, connect_timeout=2.0),
            bus=EventBus(config.redis_url, sid, open_outbox=lambda: Spool(outbox_path, **outbox)),
            open_spool=lambda: Spool(spool_path, codec=WRITES, max_bytes=64 * 1024 * 1024),
            exit_process=exits,
            leave_superseded=exits,
            owner=owner or f"sessionkit-{sid}",
        )
        made.append(session)
        session.start()
        return session, exits

    try:
        yield build
    finally:
        for session in made:
            await session.close(purge=False)


async def session_row(database_url: str, sid: str) -> asyncpg.Record:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetchrow("SELECT * FROM whatsapp_session WHERE id = $1::uuid", sid)
    finally:
        await conn.close()


async def wait_status(session: SessionCore, status: SessionStatus, timeout: float = 10) -> SessionView:
    return await eventually(session.view, lambda v: v.status == status, timeout, every=0.05)
