"""End to end through HTTP, a real WebSocket, Ray and the CLI while PostgreSQL answers but refuses.

The whole stack (API, registry, sessions, the simulated network) runs on a database of the test's own
(tests/refusalkit.py), so the refusals are real and touch nothing else on the server:
- read-only for 30 s (`ALTER DATABASE … SET default_transaction_read_only` + every connection ended, as a
  failover does): every message WhatsApp delivered meanwhile is stored once the database takes writes
  again, readable through the API, pushed once on the WebSocket, and `/health` says the database refuses
  writes while it does;
- a write PostgreSQL rejects for good (a constraint): counted in `/health` and `/metrics`, kept 0600 in
  the session's `.failed` file, and `whatsapp-bridge spool replay` stores it once the constraint is gone,
  once, however often it is run.
"""

from __future__ import annotations

import asyncio
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import cli
from tests.apikit import Stack, api_stack, new_user, websocket
from tests.raykit import eventually, local_ray
from tests.refusalkit import POISON, own_database, refuse_poison, set_read_only

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

READ_ONLY_S = 30.0
CONTACT = "+14155557101"


@dataclass
class Env:
    stack: Stack
    database_url: str  # the test's own database, which every part of the stack uses
    server_url: str  # the server's own database, from which the other one is altered
    spool_dir: Path


@pytest.fixture(scope="module")
def env(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    spool_dir = tmp_path_factory.mktemp("spools")
    with (
        local_ray(),
        own_database(postgres_server) as database_url,
        api_stack(database_url, redis_server, session={"spool_dir": str(spool_dir)}) as stack,
    ):
        yield Env(stack, database_url, postgres_server, spool_dir)


async def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _status(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    return await _json(await client.get(f"/sessions/{sid}/status"))  # type: ignore[no-any-return]


async def _health(client: httpx.AsyncClient) -> dict[str, Any]:
    return await _json(await client.get("/health"))  # type: ignore[no-any-return]


async def _metric(client: httpx.AsyncClient, name: str) -> float | None:
    text = (await client.get("/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def _texts(client: httpx.AsyncClient, sid: str) -> list[str]:
    page = await _json(await client.get(f"/sessions/{sid}/chats/{CONTACT}/messages", params={"limit": 50}))
    return [m["text"] for m in page["items"]]


async def _connected_session(client: httpx.AsyncClient, phone: str) -> str:
    sid: str = (await _json(await client.post("/sessions", json={}), 201))["id"]
    await eventually(lambda: _status(client, sid), lambda s: s["status"] == "qr_ready", 30)
    await _json(await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone}))
    await eventually(lambda: _status(client, sid), lambda s: s["status"] == "connected", 30)
    return sid


async def _incoming(client: httpx.AsyncClient, sid: str, text: str) -> None:
    await _json(
        await client.post(f"/simulator/sessions/{sid}/incoming", json={"from": CONTACT, "text": text})
    )


async def test_read_only_for_30s_loses_no_message_and_health_says_writes_are_refused(env: Env) -> None:
    stack, user = env.stack, new_user()
    texts = [f"while the database is read-only {i:02d}" for i in range(5)]
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = await _connected_session(client, "+14155550401")
        seen = len(ws.items)
        await set_read_only(env.server_url, env.database_url, True)
        since = time.monotonic()
        try:
            for text in texts:
                await _incoming(client, sid, text)
            health = await eventually(
                lambda: _health(client), lambda h: (h["writes"]["spooled"] or 0) >= len(texts), 20
            )
            assert health["writes"]["database"] == "refused" and health["writes"]["refused"] == ["read_only"]
            assert health["status"] == "degraded" and health["components"]["database"] == "ok"  # reads work
            assert health["writes"]["failed"] == 0  # nothing set aside: it waits
            # /metrics serves cached figures (refreshed every 0.5 s here): the refusal shows within that.
            refused = 'wab_database_writes_refused{reason="read_only"}'
            await eventually(lambda: _metric(client, refused), lambda v: v == 1.0, 10)
            pushed = [f for f in ws.items[seen:] if f["type"] == "message"]
            assert pushed == []  # nothing is pushed before it is stored
            assert set(texts).isdisjoint(await _texts(client, sid))
            assert (await _status(client, sid))["status"] == "connected"
            await asyncio.sleep(max(0.0, READ_ONLY_S - (time.monotonic() - since)))  # a failover's length
        finally:
            await set_read_only(env.server_url, env.database_url, False)
        for text in texts:
            await ws.wait_for(
                lambda f, t=text: f["type"] == "message" and f["message"]["text"] == t, 30, after=seen
            )
        health = await eventually(lambda: _health(client), lambda h: h["writes"]["database"] == "ok", 20)
        assert health["writes"]["refused"] == [] and health["writes"]["failed"] == 0
        pushed = [f["message"]["text"] for f in ws.items[seen:] if f["type"] == "message"]
        assert pushed == texts  # once each, in the order they arrived
        assert sorted(t for t in await _texts(client, sid) if t in texts) == texts  # stored once each


async def test_a_rejected_write_is_counted_kept_private_and_replayed_once_by_the_cli(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, user = env.stack, new_user()
    monkeypatch.setenv("WHATSAPP_BRIDGE_API_KEY", stack.api_key)
    replay = ["spool", "replay", "--url", stack.base_url]
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = await _connected_session(client, "+14155550402")
        seen = len(ws.items)
        await refuse_poison(env.database_url, True)
        try:
            await _incoming(client, sid, POISON)
            await _incoming(client, sid, "after the poison")
            health = await eventually(lambda: _health(client), lambda h: h["writes"]["failed"] == 1, 20)
            assert health["status"] == "degraded" and health["writes"]["database"] == "ok"
            await eventually(lambda: _metric(client, "wab_writes_failed"), lambda v: v == 1.0, 10)
            failed = env.spool_dir / f"{sid}.spool.failed"
            assert stat.S_IMODE(failed.stat().st_mode) == 0o600
            texts = await eventually(lambda: _texts(client, sid), lambda t: "after the poison" in t, 20)
            assert POISON not in texts  # one rejected write does not hold back the next
        finally:
            await refuse_poison(env.database_url, False)

        assert await asyncio.to_thread(cli.main, replay) == 0
        assert "1 set-aside writes requeued" in capsys.readouterr().out
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["text"] == POISON, 30, after=seen)
        assert (await _texts(client, sid)).count(POISON) == 1
        await eventually(lambda: _health(client), lambda h: h["writes"]["failed"] == 0, 20)
        await eventually(lambda: _metric(client, "wab_writes_failed"), lambda v: v == 0.0, 10)
        assert not failed.exists()

        assert await asyncio.to_thread(cli.main, replay) == 0  # nothing left to apply
        assert "0 set-aside writes requeued" in capsys.readouterr().out
        await _incoming(client, sid, "a marker after the second replay")
        await ws.wait_for(
            lambda f: f["type"] == "message" and f["message"]["text"].startswith("a marker"), 30
        )
        pushed = [f["message"]["text"] for f in ws.items[seen:] if f["type"] == "message"]
        assert pushed.count(POISON) == 1 and (await _texts(client, sid)).count(POISON) == 1
