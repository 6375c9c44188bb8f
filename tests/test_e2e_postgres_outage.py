"""End to end through HTTP and a real WebSocket while PostgreSQL is away, cut for real by a TCP proxy.

The API reaches the database through one proxy, the registry and the sessions through another, so a
test can cut everything or only the sessions' side. The simulated network keeps its own store on the
database directly: WhatsApp stays up while our database is away.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from persistence.migrate import sim_dsn
from tests.apikit import Stack, api_stack, new_user, websocket
from tests.faultproxy import FaultProxy
from tests.raykit import eventually, handle, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

OUTAGE_S = 30.0


@dataclass
class Outage:
    stack: Stack
    api_db: FaultProxy  # in front of the API's database
    node_db: FaultProxy  # in front of the registry's and the sessions' database

    def cut(self) -> None:
        self.api_db.cut()
        self.node_db.cut()

    def restore(self) -> None:
        self.api_db.restore()
        self.node_db.restore()


@pytest.fixture(scope="module")
def outage(postgres_server: str, redis_server: str) -> Iterator[Outage]:
    parts = urlsplit(postgres_server)
    upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
    with (
        local_ray(),
        FaultProxy(*upstream) as api_db,
        FaultProxy(*upstream) as node_db,
        api_stack(
            node_db.url_for(postgres_server),
            redis_server,
            api_database_url=api_db.url_for(postgres_server),
            session={"auth_dsn": sim_dsn(postgres_server)},  # the simulated network stays up
        ) as stack,
    ):
        yield Outage(stack, api_db, node_db)


async def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _status(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    return await _json(await client.get(f"/sessions/{sid}/status"))  # type: ignore[no-any-return]


async def _connected_session(client: httpx.AsyncClient, phone: str, slot: int = 1) -> str:
    sid: str = (await _json(await client.post("/sessions", json={"slot": slot}), 201))["id"]
    await eventually(lambda: _status(client, sid), lambda s: s["status"] == "qr_ready", 30)
    await _json(await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone}))
    await eventually(lambda: _status(client, sid), lambda s: s["status"] == "connected", 30)
    return sid


async def _pid(outage: Outage, sid: str) -> int:
    placement = await handle(sid, outage.stack.namespace).ping.remote()
    return int(placement.pid)


async def _health(client: httpx.AsyncClient) -> dict[str, Any]:
    return await _json(await client.get("/health"))  # type: ignore[no-any-return]


async def test_a_30s_outage_loses_no_message_no_send_and_no_session(outage: Outage) -> None:
    stack, user = outage.stack, new_user()
    async with stack.client(user) as client, websocket(stack, user) as ws:
        inbox = await _connected_session(client, "+14155550301", slot=1)
        other = await _connected_session(client, "+14155550302", slot=2)
        contact = "+14155557001"
        seen = len(ws.items)
        outage.cut()
        down_since = time.monotonic()
        texts = [f"while the database is away {i:02d}" for i in range(20)]
        for text in texts:
            got = await client.post(
                f"/simulator/sessions/{inbox}/incoming", json={"from": contact, "text": text}
            )
            await _json(got)
        # A send WhatsApp takes succeeds; its retry with the same key sends nothing more.
        headers = {"Idempotency-Key": "outage-send-1"}
        body = {"to": contact, "text": "reply during the outage"}
        first = await _json(await client.post(f"/sessions/{inbox}/send/text", json=body, headers=headers))
        again = await _json(await client.post(f"/sessions/{inbox}/send/text", json=body, headers=headers))
        assert again == first
        # A session whose process dies now comes back on its own once the database is back.
        os.kill(await _pid(outage, other), signal.SIGKILL)
        health = await _health(client)
        assert health["components"]["database"] != "ok" and health["status"] == "degraded"
        listed = await client.get("/sessions")
        assert listed.status_code == 503 and "Retry-After" in listed.headers
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        outage.restore()
        restored_at = time.monotonic()

        # Every message arrives on the open socket once, in order, after the database is back.
        for last in (texts[-1], "reply during the outage"):
            await ws.wait_for(
                lambda f, t=last: f["type"] == "message" and f["message"]["text"] == t, 30, after=seen
            )
        frames = [f["message"] for f in ws.items[seen:] if f["type"] == "message"]
        assert [m["text"] for m in frames if m["text"].startswith("while the")] == texts
        # Our reply: stored once, then each receipt once (the simulated phone delivers and reads it).
        reply = [(m["id"], m["status"]) for m in frames if m["text"] == "reply during the outage"]
        assert [mid for mid, _ in reply] == [first["id"]] * len(reply)
        assert [status for _, status in reply] == ["sent", "delivered", "read"][: len(reply)]
        await eventually(lambda: _status(client, other), lambda s: s["status"] == "connected", 30)
        assert time.monotonic() - restored_at < 30
        assert (await _health(client))["components"]["database"] == "ok"

    async with stack.client(user) as client:
        page = await _json(
            await client.get(f"/sessions/{inbox}/chats/{contact}/messages", params={"limit": 50})
        )
        stored = [m["text"] for m in page["items"]]
        assert sorted(t for t in stored if t.startswith("while the")) == texts
        assert stored.count("reply during the outage") == 1
        sent = await _json(await client.get(f"/simulator/sessions/{inbox}/sent"))
        assert [m["text"] for m in sent].count("reply during the outage") == 1
        other_status = await _status(client, other)
        assert other_status["phone"] == "+14155550302"  # same device, no new scan


async def test_a_session_started_while_its_database_is_away_answers_and_pairs_after(outage: Outage) -> None:
    stack, user = outage.stack, new_user()
    async with stack.client(user) as client:
        outage.node_db.cut()  # the sessions' side only: the API still reads the row
        try:
            created = await _json(await client.post("/sessions", json={}), 201)
            sid = created["id"]
            for _ in range(3):
                status = await _status(client, sid)
                assert status["id"] == sid and status["qr"] is None
                await asyncio.sleep(0.5)
        finally:
            outage.node_db.restore()
        await eventually(lambda: _status(client, sid), lambda s: s["status"] == "qr_ready", 30)
        await _json(await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": "+14155550303"}))
        await eventually(lambda: _status(client, sid), lambda s: s["status"] == "connected", 30)
