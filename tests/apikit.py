"""The whole stack for API tests: local Ray, the registry, and the app served by uvicorn on a free port.

Real HTTP through httpx and a real WebSocket through `websockets`. A test module shares one stack
(`api_stack`), since Ray and the session processes are what takes time; tests isolate themselves with
their own user ids.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from actors.registry import start_registry
from api.app import create_app
from api.localstack import free_port
from kernel.settings import Settings, asyncpg_dsn
from tests.raykit import kill_namespace_actors, registry_config, unique_namespace

# QR rounds long enough to scan in a test, short enough to see codes rotate: 1.5 s, then 1 s each.
SESSION_TIMINGS = {"qr_first_s": 1.5, "qr_next_s": 1.0, "qr_codes": 10, "qr_max_rounds": 3}
START_TIMEOUT_S = 30.0


def reset_database(database_url: str) -> None:
    """Empty every table the registry would start sessions from (a module's stack starts clean)."""

    async def empty() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
        try:
            await conn.execute("SET lock_timeout = '15s'")
            await conn.execute(
                "TRUNCATE whatsapp_session, app_user, chat, message, fleet_operation,"
                " wa_sim.device, wa_sim.sent CASCADE"
            )
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, empty()).result()


class ServerThread:
    """uvicorn serving an app on 127.0.0.1:<free port> (or the port given) in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class Stack:
    """A running API: where it listens, its settings and Ray namespace."""

    base_url: str
    ws_url: str
    settings: Settings
    namespace: str
    api_key: str

    def headers(self, user: str | None = None, **extra: str) -> dict[str, str]:
        found = {"X-API-Key": self.api_key, **extra}
        if user is not None:
            found["X-User-Id"] = user
        return found

    def client(self, user: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=self.headers(user), timeout=60.0)


def make_settings(
    database_url: str, redis_url: str, namespace: str, api_key: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "ray_namespace": namespace,
        "whatsapp_bridge_api_key": api_key,
        "wa_backend": "simulated",
        "ws_token_ttl_s": 60,
        "metrics_refresh_s": 0.5,  # /metrics figures follow within a test's patience (api.metrics_refresh)
        **overrides,
    }
    return Settings(_env_file=None, **values)


@contextmanager
def api_stack(
    database_url: str,
    redis_url: str,
    *,
    api_database_url: str | None = None,
    session: dict[str, Any] | None = None,
    registry: dict[str, Any] | None = None,
    **settings: Any,
) -> Iterator[Stack]:
    """Registry (fast QR timings) and API for one module, in a fresh namespace; Ray must be up.

    The registry and the sessions use `database_url`, the API `api_database_url` (default the same): a
    test puts a fault proxy in front of either side. `session` overrides the sessions' configuration,
    `registry` the registry's own.
    """
    reset_database(database_url)
    namespace = unique_namespace()
    api_key = secrets.token_urlsafe(24)
    overrides = {**SESSION_TIMINGS, **(session or {})}
    start_registry(registry_config(database_url, redis_url, namespace, session=overrides, **(registry or {})))
    api_db = api_database_url or database_url
    app = create_app(make_settings(api_db, redis_url, namespace, api_key, **settings))
    try:
        with ServerThread(app) as server:
            base = f"http://127.0.0.1:{server.port}"
            yield Stack(base, f"ws://127.0.0.1:{server.port}/ws", app.state.api.settings, namespace, api_key)
    finally:
        kill_namespace_actors(namespace)


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


# --- WebSocket -------------------------------------------------------------------------------------------


@dataclass
class WsFrames:
    """Frames received on one WebSocket, in order, collected by a background reader."""

    conn: ClientConnection
    items: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    closed_code: int | None = None
    closed_reason: str = ""

    def of(self, frame_type: str, session_id: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.items if f["type"] == frame_type and session_id in (None, f.get("sessionId"))]

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0, *, after: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for frame in self.items[after:]:
                if pred(frame):
                    return frame
            if self.closed_code is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no matching frame within {timeout}s (closed: {self.closed_code}); last: {self.items[-8:]}"
        )

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        """The close code once the server closed the socket (None if it is still open after `timeout`)."""
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=timeout)
        return self.closed_code


@asynccontextmanager
async def websocket(
    stack: Stack,
    user: str | None = None,
    *,
    token: str | None = None,
    session_id: str | None = None,
    headers: dict[str, str] | None = None,
    cursor: str | None = None,
) -> AsyncIterator[WsFrames]:
    """A WebSocket to /ws (headers for `user`, or a token), collecting frames while the block runs."""
    pairs = (("token", token), ("sessionId", session_id), ("cursor", cursor))
    query = {k: v for k, v in pairs if v is not None}
    url = stack.ws_url + ("?" + str(httpx.QueryParams(query)) if query else "")
    sent_headers = headers if headers is not None else (stack.headers(user) if user and not token else {})
    conn = await asyncio.wait_for(connect(url, additional_headers=sent_headers, open_timeout=10), 15)
    got = WsFrames(conn)

    async def reader() -> None:
        try:
            async for raw in conn:
                got.items.append(json.loads(raw))
        except ConnectionClosed:
            pass
        got.closed_code = conn.close_code if conn.close_code is not None else 1006
        got.closed_reason = conn.close_reason or ""

    got.reader = task = asyncio.create_task(reader())
    try:
        yield got
    finally:
        await asyncio.wait_for(conn.close(), 5)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
