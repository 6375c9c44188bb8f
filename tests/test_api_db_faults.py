"""The API under real dependency faults: PostgreSQL cut, stalled or refusing connections; an actor gone or
frozen. Every answer is a 503 with Retry-After (or the documented fallback), never a 500 or a hang.

The API reaches PostgreSQL through a FaultProxy; the registry and the sessions use it directly, so a
fault here is the API's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import ray

from actors.registry import REGISTRY_NAME, start_registry
from api.app import create_app
from api.database import QUERY_TIMEOUT_S
from kernel.settings import asyncpg_dsn
from tests.apikit import SESSION_TIMINGS, Stack, api_stack, make_settings, new_user
from tests.faultproxy import FaultProxy
from tests.raykit import eventually, handle, local_ray, registry_config

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]

# A 503 must come within the query timeout plus the time to answer.
ANSWER_BOUND_S = QUERY_TIMEOUT_S + 5


@dataclass
class FaultStack:
    api: Stack
    proxy: FaultProxy
    database_url: str
    redis_url: str

    @property
    def namespace(self) -> str:
        return self.api.namespace

    def client(self, user: str) -> httpx.AsyncClient:
        return self.api.client(user)

    def restart_registry(self) -> None:
        config = registry_config(
            self.database_url, self.redis_url, self.namespace, session=dict(SESSION_TIMINGS)
        )
        start_registry(config)


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[FaultStack]:
    url = urlsplit(postgres_server)
    with (
        local_ray(),
        FaultProxy(url.hostname or "127.0.0.1", url.port or 5432) as proxy,
        api_stack(postgres_server, redis_server, api_database_url=proxy.url_for(postgres_server)) as api,
    ):
        try:
            yield FaultStack(api, proxy, postgres_server, redis_server)
        finally:
            proxy.restore()


@pytest.fixture
def proxy(stack: FaultStack) -> Iterator[FaultProxy]:
    """The API's link to PostgreSQL, restored after the test whatever happened."""
    yield stack.proxy
    stack.proxy.restore()


async def _db_routes(client: httpx.AsyncClient) -> list[httpx.Response]:
    """Every route that needs the database, concurrently."""
    return list(
        await asyncio.gather(
            client.get("/sessions"),
            client.post("/sessions", json={}),
            client.get("/users/me"),
            client.put("/users/me/whatsapp-phone", json={"phone": "+14155552671"}),
            client.get("/inbox/chats"),
        )
    )


def _assert_unavailable(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code == 503, (response.request.url, response.text)
        assert response.json()["error"]["code"] == "service_unavailable"
        assert int(response.headers["retry-after"]) > 0


async def _answers_again(client: httpx.AsyncClient) -> None:
    async def listed() -> int:
        return (await client.get("/sessions")).status_code

    await eventually(listed, lambda status: status == 200, timeout=30)


@pytest.mark.parametrize("fault", ["cut", "stall"])
async def test_a_database_cut_or_stalled_is_503_with_retry_after_on_every_route_within_the_query_timeout(
    stack: FaultStack, proxy: FaultProxy, fault: str
) -> None:
    """Cut: connections closed and refused. Stall: nothing answers, so only the query timeout ends it."""
    async with stack.client(new_user()) as client:
        assert (await client.get("/sessions")).status_code == 200  # the pool holds a live connection
        getattr(proxy, fault)()
        started = time.monotonic()
        _assert_unavailable(await _db_routes(client))
        assert time.monotonic() - started < ANSWER_BOUND_S
        proxy.restore()
        await _answers_again(client)


@pytest.fixture
def role_without_connections(postgres_server: str) -> Iterator[str]:
    """The test database's URL as a role PostgreSQL lets make no connection at all."""
    role = f"wab_noconn_{uuid.uuid4().hex[:8]}"

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(postgres_server), timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
    parts = urlsplit(postgres_server)
    host = parts.netloc.rpartition("@")[2]
    try:
        yield urlunsplit(parts._replace(netloc=f"{role}@{host}"))
    finally:
        asyncio.run(sql(f"DROP ROLE IF EXISTS {role}"))


async def test_too_many_connections_is_503(
    stack: FaultStack, role_without_connections: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = stack.api.api_key
    settings = make_settings(role_without_connections, stack.redis_url, stack.namespace, key)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    headers = {"X-API-Key": key, "X-User-Id": new_user()}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client,
    ):
        _assert_unavailable(await _db_routes(client))
    # Logs name the failure, never its text (which can hold the URL's user or the SQL parameters).
    assert role_without_connections.rpartition("/")[2].split("@")[0] not in caplog.text
    assert "+14155552671" not in caplog.text


# --- status falls back to the stored row -----------------------------------------------------------------


async def test_status_answers_200_from_creation_on(stack: FaultStack) -> None:
    async with stack.client(new_user()) as client:
        created = await client.post("/sessions", json={})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        seen: list[int] = []

        async def status() -> dict[str, Any]:
            response = await client.get(f"/sessions/{sid}/status")
            seen.append(response.status_code)
            found: dict[str, Any] = response.json()
            return found

        await eventually(status, lambda body: body.get("status") == "qr_ready", timeout=30)
        assert set(seen) == {200}, seen


@contextlib.contextmanager
def registry_stopped(stack: FaultStack) -> Iterator[None]:
    ray.kill(ray.get_actor(REGISTRY_NAME, namespace=stack.namespace), no_restart=True)
    try:
        yield
    finally:
        stack.restart_registry()


async def test_status_of_a_session_without_actor_is_the_stored_row_then_503_without_database(
    stack: FaultStack, proxy: FaultProxy
) -> None:
    async with stack.client(new_user()) as client:
        sid = (await client.post("/sessions", json={})).json()["id"]
        await eventually(
            lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json().get("qr") is not None, 30
        )
        with registry_stopped(stack):
            ray.kill(handle(sid, stack.namespace), no_restart=True)  # it dies a moment later
            seen: set[int] = set()

            async def status() -> httpx.Response:
                response = await client.get(f"/sessions/{sid}/status")
                seen.add(response.status_code)
                return response

            stored = await eventually(status, lambda r: r.status_code != 200 or r.json()["qr"] is None)
            assert seen == {200}, seen
            assert stored.json()["id"] == sid and stored.json()["pairingCode"] is None
            proxy.cut()
            gone = await client.get(f"/sessions/{sid}/status")
            assert gone.status_code == 503, gone.text
            assert int(gone.headers["retry-after"]) > 0
            proxy.restore()


# --- sends ------------------------------------------------------------------------------------------------


async def _paired_session(client: httpx.AsyncClient) -> str:
    sid: str = (await client.post("/sessions", json={})).json()["id"]
    await eventually(
        lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json().get("status") == "qr_ready", 30
    )
    scanned = await client.post(
        f"/simulator/sessions/{sid}/scan", json={"phone": f"+1415555{random.randint(1000, 9999)}"}
    )
    assert scanned.status_code == 200, scanned.text
    await eventually(
        lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json().get("status") == "connected", 30
    )
    return sid


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # the registry may have replaced it meanwhile
            os.kill(pid, signal.SIGCONT)


async def test_a_send_to_a_frozen_actor_is_504_send_outcome_unknown(stack: FaultStack) -> None:
    async with stack.client(new_user()) as client:
        sid = await _paired_session(client)
        placement = await ray.get_actor(REGISTRY_NAME, namespace=stack.namespace).where.remote(sid)
        with frozen(int(placement.pid)):
            response = await client.post(
                f"/sessions/{sid}/send/text",
                json={"to": "+14155550199", "text": "hello"},
            )
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "send_outcome_unknown"


@pytest.fixture(scope="module")
async def connected(stack: FaultStack) -> AsyncIterator[tuple[str, str]]:
    user = new_user()
    async with stack.client(user) as client:
        yield user, await _paired_session(client)


@pytest.mark.parametrize(
    "key", ["", "k" * 129, "tab\there", "caf\u00e9"], ids=["empty", "too-long", "control", "non-ascii"]
)
async def test_an_invalid_idempotency_key_is_422(
    stack: FaultStack, connected: tuple[str, str], key: str
) -> None:
    user, sid = connected
    async with stack.client(user) as client:
        for path, kwargs in (
            ("text", {"json": {"to": "+14155550199", "text": "hi"}}),
            ("media", {"data": {"to": "+14155550199"}, "files": {"file": ("a.txt", b"hi", "text/plain")}}),
            ("audio", {"data": {"to": "+14155550199"}, "files": {"file": ("a.wav", b"RIFF", "audio/wav")}}),
        ):
            headers = [(b"Idempotency-Key", key.encode("latin-1"))]
            response = await client.post(f"/sessions/{sid}/send/{path}", headers=headers, **kwargs)
            assert response.status_code == 422, (path, response.text)
            assert response.json()["error"]["code"] == "invalid_request"
