"""Users' own API keys, through the app in-process (no Ray): real PostgreSQL and Redis.

Made by the admin key and shown once; stored as a keyed hash; acting as their user only; refused from the
next request after revoking, also by another API process; `lastUsedAt` noted at most once a minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.app import create_app
from api.auth import WsTokens
from kernel.settings import Settings, asyncpg_dsn
from tests.apikit import ServerThread

ADMIN = "admin-key-for-user-key-tests"
ADMIN_ONLY = [
    ("GET", "/ops/sessions"),
    ("POST", "/ops/rebalance"),
    ("POST", "/simulator/sessions/00000000-0000-4000-8000-000000000000/drop"),
    ("POST", "/users/alice/keys"),
    ("GET", "/users/alice/keys"),
    ("DELETE", "/users/alice/keys/0123456789abcdef"),
]


def _settings(database_url: str, redis_url: str, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "whatsapp_bridge_api_key": SecretStr(ADMIN),
        "wa_backend": "simulated",
        "ws_token_ttl_s": 60,
    }
    return Settings(_env_file=None, **(base | values))


Api = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def api(database_url: str, redis_url: str) -> Api:
    """Opens an API process in-process (its lifespan running); each call is another process."""

    @asynccontextmanager
    async def open_api(**values: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(_settings(database_url, redis_url, **values))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://api") as client,
        ):
            yield client

    return open_api


async def _new_key(client: httpx.AsyncClient, user: str, name: str | None = None) -> dict[str, Any]:
    made = await client.post(
        f"/users/{user}/keys", json={"name": name} if name else None, headers={"X-API-Key": ADMIN}
    )
    assert made.status_code == 201, made.text
    found: dict[str, Any] = made.json()
    return found


def _as(key: str, **extra: str) -> dict[str, str]:
    return {"X-API-Key": key, **extra}


async def test_a_key_is_shown_once_stored_hashed_and_acts_as_its_user_only(
    api: Api, database_url: str
) -> None:
    async with api() as client:
        made = await _new_key(client, "alice", "laptop")
        assert set(made) == {"id", "name", "key", "createdAt"} and made["name"] == "laptop"
        key = made["key"]
        assert key.startswith("wab_") and len(key) > 50

        listed = await client.get("/users/alice/keys", headers=_as(ADMIN))
        assert listed.status_code == 200
        assert listed.json() == [
            {"id": made["id"], "name": "laptop", "createdAt": made["createdAt"], "lastUsedAt": None}
        ]
        assert key not in listed.text
        assert (await client.get("/users/bob/keys", headers=_as(ADMIN))).json() == []

        # Acts as alice without X-User-Id, and with her own.
        created = await client.post("/sessions", json={}, headers=_as(key))
        assert created.status_code == 201, created.text
        for headers in (_as(key), _as(key, **{"X-User-Id": "alice"})):
            mine = await client.get("/sessions", headers=headers)
            assert [s["id"] for s in mine.json()] == [created.json()["id"]]
        me = await client.get("/me", headers=_as(key))
        assert me.json() == {"userId": "alice", "admin": False}
        assert (await client.get("/users/me", headers=_as(key))).json()["id"] == "alice"

        # Another user's X-User-Id: 403 user_mismatch, never bob's data.
        theirs = await client.get("/sessions", headers=_as(key, **{"X-User-Id": "bob"}))
        assert theirs.status_code == 403 and theirs.json()["error"]["code"] == "user_mismatch"
        bob = await client.get("/sessions", headers=_as(ADMIN, **{"X-User-Id": "bob"}))
        assert bob.json() == []
        token = await client.post("/ws-token", headers=_as(key, **{"X-User-Id": "bob"}))
        assert token.status_code == 403 and token.json()["error"]["code"] == "user_mismatch"

        # Admin routes: 403 admin_only (its own keys included).
        for method, path in ADMIN_ONLY:
            answer = await client.request(method, path, headers=_as(key))
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["error"]["code"] == "admin_only"

        # The admin key still is every user, and /me says so.
        assert (await client.get("/me", headers=_as(ADMIN))).json() == {"userId": None, "admin": True}
        as_alice = await client.get("/me", headers=_as(ADMIN, **{"X-User-Id": "alice"}))
        assert as_alice.json() == {"userId": "alice", "admin": True}

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row = await conn.fetchrow("SELECT * FROM user_api_key WHERE id = $1", made["id"])
    finally:
        await conn.close()
    assert row is not None and row["user_id"] == "alice"
    stored = b"".join(bytes(str(v), "utf-8") if not isinstance(v, bytes) else v for v in row.values())
    secret = key.split("_", 2)[2]
    assert secret.encode() not in stored and key.encode() not in stored and len(row["key_hash"]) == 32


async def test_a_websocket_token_is_minted_for_the_keys_user(api: Api) -> None:
    async with api() as client:
        key = (await _new_key(client, "carol"))["key"]
        minted = await client.post("/ws-token", headers=_as(key))
        assert minted.status_code == 200, minted.text
    tokens = WsTokens.from_settings(_settings("postgresql://unused/x", "redis://unused"))
    assert tokens.verify(minted.json()["token"]) == "carol"


async def test_wrong_and_revoked_keys_are_refused_by_every_api_process(api: Api) -> None:
    async with api() as first, api() as second:
        made = await _new_key(first, "dave")
        key = made["key"]
        kept = (await _new_key(first, "dave", "kept"))["key"]
        assert (await second.get("/sessions", headers=_as(key))).status_code == 200
        key_id, secret = key.split("_")[1], key.split("_", 2)[2]
        for wrong in (
            key[:-1],
            key + "x",
            f"wab_{key_id}_{secret.upper()}",
            f"wab_{'0' * 16}_{secret}",
            "wab_",
            "wab__x",
            ADMIN[:-1],
        ):
            refused = await second.get("/sessions", headers=_as(wrong))
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", wrong

        revoked = await first.delete(f"/users/dave/keys/{made['id']}", headers=_as(ADMIN))
        assert revoked.status_code == 204
        for client in (first, second):  # the next request, on either process
            refused = await client.get("/sessions", headers=_as(key))
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert (await second.get("/sessions", headers=_as(kept))).status_code == 200
        again = await first.delete(f"/users/dave/keys/{made['id']}", headers=_as(ADMIN))
        assert again.status_code == 404 and again.json()["error"]["code"] == "key_not_found"
        # Another user's key id under this user: as unknown as any.
        other = (await _new_key(first, "erin"))["id"]
        foreign = await first.delete(f"/users/dave/keys/{other}", headers=_as(ADMIN))
        assert foreign.status_code == 404
        assert [k["id"] for k in (await first.get("/users/erin/keys", headers=_as(ADMIN))).json()] == [other]


async def test_last_used_at_is_noted_at_most_once_a_minute(api: Api, database_url: str) -> None:
    async with api() as client:
        made = await _new_key(client, "frank")

        async def last_used() -> str | None:
            found = (await client.get("/users/frank/keys", headers=_as(ADMIN))).json()
            value: str | None = found[0]["lastUsedAt"]
            return value

        assert await last_used() is None
        await client.get("/sessions", headers=_as(made["key"]))
        first = await last_used()
        assert first is not None and first >= made["createdAt"]
        await client.get("/sessions", headers=_as(made["key"]))
        assert await last_used() == first, "a second use within the minute writes nothing"

        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:  # the last noted use was two minutes ago: the next use is noted
            await conn.execute(
                "UPDATE user_api_key SET last_used_at = last_used_at - interval '2 minutes' WHERE id = $1",
                made["id"],
            )
        finally:
            await conn.close()
        earlier = await last_used()
        assert earlier is not None and earlier < first
        await client.get("/sessions", headers=_as(made["key"]))
        latest = await last_used()
        assert latest is not None and latest >= first


async def test_bad_key_requests_get_documented_errors(api: Api) -> None:
    async with api() as client:
        long_name = await client.post("/users/gina/keys", json={"name": "x" * 101}, headers=_as(ADMIN))
        assert long_name.status_code == 422 and long_name.json()["error"]["code"] == "invalid_request"
        bad_user = await client.post("/users/a%09b/keys", headers=_as(ADMIN))
        assert bad_user.status_code == 422, bad_user.text
        no_key = await client.get("/users/gina/keys")
        assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "unauthorized"
        assert (await client.get("/me")).status_code == 401


async def test_a_user_key_is_503_not_401_while_the_database_is_down(redis_url: str) -> None:
    app = create_app(_settings("postgresql://postgres@127.0.0.1:9/x", redis_url))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        key = "wab_0123456789abcdef_" + "s" * 43
        answer = await client.get("/sessions", headers=_as(key))
        assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
        # The admin key needs no database to be known.
        assert (await client.get("/me", headers=_as(ADMIN))).status_code == 200


@pytest.mark.parametrize("key", [None, ""])
def test_the_service_refuses_to_start_without_an_admin_key(key: str | None) -> None:
    settings = Settings(
        _env_file=None,
        database_url="postgresql://unused/x",
        redis_url="redis://unused",
        whatsapp_bridge_api_key=None if key is None else SecretStr(key),
    )
    with pytest.raises(RuntimeError, match="WHATSAPP_BRIDGE_API_KEY"):
        create_app(settings)
    with pytest.raises(RuntimeError, match="WHATSAPP_BRIDGE_API_KEY"):
        WsTokens.from_settings(settings)


async def test_a_user_keys_socket_is_its_users_and_ends_after_the_token_lifetime(
    database_url: str, redis_url: str
) -> None:
    """Over a real server: a user key opens /ws as its user; a revoked key is refused; an open socket of a
    key ends after WS_TOKEN_TTL_S (10 s here), so a revoked key's socket cannot outlive that."""
    app = create_app(_settings(database_url, redis_url, ws_token_ttl_s=10))
    with ServerThread(app) as server:
        base = f"http://127.0.0.1:{server.port}"
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            made = await _new_key(client, "hana")
            sid = (await client.post("/sessions", json={}, headers=_as(made["key"]))).json()["id"]
        async with connect(url, additional_headers=_as(made["key"]), open_timeout=10) as ws:
            opened = time.monotonic()
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert (first["type"], first["sessionId"]) == ("status", sid)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                revoked = await client.delete(f"/users/hana/keys/{made['id']}", headers=_as(ADMIN))
                assert revoked.status_code == 204
            await asyncio.wait_for(_drain(ws), 30)
            assert ws.close_code == 1008 and 9 <= time.monotonic() - opened < 25
        async with connect(url, additional_headers=_as(made["key"]), open_timeout=10) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1008  # the revoked key opens nothing
        posing = _as((await _fresh_key(base, "hana")), **{"X-User-Id": "ivan"})
        async with connect(url, additional_headers=posing, open_timeout=10) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1008  # another user's X-User-Id


async def _fresh_key(base: str, user: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        key: str = (await _new_key(client, user))["key"]
    return key


async def _drain(ws: ClientConnection) -> None:
    """Read frames until the server closes the socket."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        return
