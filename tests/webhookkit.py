"""Webhook tests' tools: a real HTTP receiver on this machine, events written to the event log as the
sessions' bus writes them, and a dispatcher run in the test's own event loop (no Ray)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from actors.webhook_dispatcher import Dispatcher
from actors.webhook_ports import WebhookConfig
from actors.webhook_sender import Sender
from api.localstack import free_port
from kernel.settings import asyncpg_dsn
from kernel.wire import EVENTS_STREAM, event_fields
from persistence.stores import PostgresStores


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def frame(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


# What the receiver answers to its n-th request (0-based) with this body: (status, extra headers).
Answer = Callable[[int, dict[str, Any]], Awaitable[tuple[int, dict[str, str]]]]


async def ok(_: int, __: dict[str, Any]) -> tuple[int, dict[str, str]]:
    return 200, {}


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 that records every request; `down()` / `up()` close and reopen
    its port (connections are then refused)."""

    answer: Answer = ok
    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        index = len(self.requests)
        self.requests.append(Received(dict(request.headers), body, time.monotonic()))
        status, headers = await self.answer(index, json.loads(body))
        return web.Response(status=status, headers=headers, text="nope" if status >= 300 else "ok")

    async def up(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def frames(self) -> list[dict[str, Any]]:
        return [r.frame for r in self.requests]

    async def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.frames()):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"the receiver did not get what was expected in {timeout}s: {self.frames()[-5:]}"
        )


@contextlib.asynccontextmanager
async def receiver(answer: Answer = ok) -> AsyncIterator[Receiver]:
    found = Receiver(answer)
    await found.up()
    try:
        yield found
    finally:
        await found.down()


class Log:
    """Writes events to `wa:events` exactly as a session's bus does (one producer, increasing seqs)."""

    def __init__(self, redis_url: str) -> None:
        self._redis = Redis.from_url(redis_url)
        self._producer = uuid.uuid4().hex
        self._seq = 0

    async def emit(self, session_id: str, kind: str = "msg", **payload: Any) -> str:
        self._seq += 1
        fields = event_fields(session_id, kind, json.dumps(payload), self._producer, self._seq)
        pairs = dict(zip(fields[::2], fields[1::2], strict=True))
        entry_id = await self._redis.xadd(EVENTS_STREAM, pairs)  # type: ignore[arg-type]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def message(self, session_id: str, text: str) -> str:
        return await self.emit(session_id, "msg", chatId="15550001111@s.whatsapp.net", message={"text": text})

    async def aclose(self) -> None:
        await self._redis.aclose()


def config(database_url: str, redis_url: str, **overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = {
        "allow_private": True,
        "backoff_max_s": 0.3,
        "timeout_s": 2.0,
        "poll_s": 0.1,
        **overrides,
    }
    return WebhookConfig(asyncpg_dsn(database_url), redis_url, **values, stores=PostgresStores())


@contextlib.asynccontextmanager
async def dispatching(cfg: WebhookConfig, index: int = 0) -> AsyncIterator[Dispatcher]:
    """A dispatcher running in this event loop until the block ends (then stopped as a crash would)."""
    sender = Sender(allow_private=cfg.allow_private, timeout_s=cfg.timeout_s)
    store = PostgresStores().webhooks(cfg.database_dsn)
    dispatcher = Dispatcher(cfg, index, store, sender)
    task = asyncio.get_running_loop().create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sender.close()
        await store.close()
        # Cancelled mid-connect or mid-read (a crash, here), its Redis and PostgreSQL clients can leave a
        # socket to the garbage collector, as a killed process leaves it to the OS. Collected now: the
        # suite turns a ResourceWarning into a failure of whichever later test the collector runs in
        # (two full runs failed so, in this module, each time a different test).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def add_session(database_url: str, user_id: str, slot: int = 1) -> str:
    sid = str(uuid.uuid4())
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO whatsapp_session (id, user_id, slot, status) VALUES ($1::uuid, $2, $3, 'connected')",
            sid,
            user_id,
            slot,
        )
    finally:
        await conn.close()
    return sid


async def add_webhook(
    database_url: str,
    user_id: str,
    url: str,
    *,
    events: list[str] | None = None,
    session_id: str | None = None,
) -> tuple[str, str]:
    """A webhook row as POST /webhooks stores it: (id, secret)."""
    import base64
    import secrets

    from api.routes.webhooks import SECRET_BYTES

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        wid = await conn.fetchval(
            "INSERT INTO webhook (id, user_id, url, events, session_id, secret)"
            " VALUES (gen_random_uuid(), $1, $2, $3::jsonb, $4::uuid, $5) RETURNING id::text",
            user_id,
            url,
            None if events is None else json.dumps(events),
            session_id,
            secret,
        )
    finally:
        await conn.close()
    return str(wid), secret


async def deliveries(database_url: str, webhook_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT event_id, state, attempts, last_status, last_error FROM webhook_delivery"
            " WHERE webhook_id = $1::uuid ORDER BY event_ms, event_seq",
            webhook_id,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]
