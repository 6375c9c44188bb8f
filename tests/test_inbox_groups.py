"""INBOX_CHATS=all over HTTP and WebSocket: groups are stored and pushed, with their subject as the chat's
name and each sender's name; status, newsletters, Meta AI and system chats stay out even then."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apikit import Stack, api_stack, new_user, websocket
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

GROUP = "120363012345678901@g.us"


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, session={"inbox_chats": "all"}) as running:
        yield running


async def paired(client: httpx.AsyncClient) -> str:
    created = await client.post("/sessions", json={})
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]

    async def status() -> str:
        return str((await client.get(f"/sessions/{sid}/status")).json()["status"])

    await eventually(status, lambda s: s == "qr_ready", 30)
    scanned = await client.post(
        f"/simulator/sessions/{sid}/scan", json={"phone": f"+1415558{random.randint(1000, 9999)}"}
    )
    assert scanned.status_code == 200, scanned.text
    await eventually(status, lambda s: s == "connected", 30)
    return sid


async def test_groups_carry_their_subject_and_senders_names(stack: Stack) -> None:
    user = new_user()
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = await paired(client)
        for body in (
            {"from": "status@broadcast", "text": "my status", "sender": "+15551250009"},
            {"from": "120363999999999999@newsletter", "text": "channel post"},
            {"from": "867051314767696@bot", "text": "Meta AI"},
        ):
            response = await client.post(f"/simulator/sessions/{sid}/incoming", json=body)
            assert response.status_code == 200, response.text
        sent = await client.post(
            f"/simulator/sessions/{sid}/incoming",
            json={
                "from": GROUP,
                "text": "dinner at 8?",
                "pushName": "Bob",
                "sender": "+15551250002",
                "subject": "Family",
            },
        )
        assert sent.status_code == 200, sent.text
        frame = await ws.wait_for(
            lambda f: f["type"] == "message" and f["message"]["id"] == sent.json()["id"]
        )

        async def listing() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await client.get(f"/sessions/{sid}/chats")).json()["items"]
            return items

        chats = await eventually(
            listing, lambda cs: any(c["id"] == GROUP and c["name"] == "Family" for c in cs), 15
        )
        stored = (await client.get(f"/sessions/{sid}/chats/{GROUP}/messages")).json()["items"]

        group = next(c for c in chats if c["id"] == GROUP)
        assert group["isGroup"] and group["name"] == "Family"
        assert (frame["message"]["senderName"], frame["message"]["sender"]) == (
            "Bob",
            "15551250002@s.whatsapp.net",
        )
        assert [(m["text"], m["senderName"]) for m in stored] == [("dinner at 8?", "Bob")]
        assert all(c["id"].endswith(("@s.whatsapp.net", "@g.us")) for c in chats), [c["id"] for c in chats]
