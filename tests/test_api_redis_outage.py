"""Redis stopped mid-test: REST keeps answering, the WebSocket keeps getting status (by polling the
actors), and live events flow again once Redis is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from api.hub import POLL_INTERVAL_S
from api.localstack import EmbeddedValkey
from tests.apikit import Stack, api_stack, new_user, websocket
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(postgres_server: str, valkey: EmbeddedValkey) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, valkey.url) as running:
        yield running


async def test_rest_and_status_survive_a_redis_outage(stack: Stack, valkey: EmbeddedValkey) -> None:
    user = new_user()
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = (await client.post("/sessions", json={})).json()["id"]
        await ws.wait_for(lambda f: f["type"] == "qr" and f["sessionId"] == sid)  # live, through Redis

        valkey.stop()
        outage = time.monotonic()
        health = (await client.get("/health")).json()
        assert health["components"]["redis"] == "error" and health["components"]["database"] == "ok"
        listed = await client.get("/sessions")
        assert listed.status_code == 200 and listed.json()[0]["id"] == sid
        assert (await client.get(f"/sessions/{sid}/status")).status_code == 200

        seen = len(ws.items)
        scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": "+14155550123"})
        assert scanned.status_code == 200, scanned.text
        frame = await ws.wait_for(
            lambda f: f["type"] == "status" and f["status"] == "connected", timeout=10, after=seen
        )
        assert frame["sessionId"] == sid and frame["phone"] == "+14155550123"
        assert time.monotonic() - outage < 15
        await asyncio.sleep(2 * POLL_INTERVAL_S + 0.5)  # polling sends changes only: no repeats
        connected_frames = [
            f for f in ws.items[seen:] if f["type"] == "status" and f["status"] == "connected"
        ]
        assert len(connected_frames) <= 2

        valkey.start()

        async def incoming() -> int:
            response = await client.post(
                f"/simulator/sessions/{sid}/incoming", json={"from": "+15550009999", "text": "back"}
            )
            assert response.status_code == 200, response.text
            await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["text"] == "back", timeout=3)
            return 1

        # Live again: a message event (never polled) reaches the socket through Redis.
        await eventually(incoming, lambda _: True, timeout=30, every=0.5)
        health = (await client.get("/health")).json()
        assert health["components"]["redis"] == "ok"
        assert ws.closed_code is None
