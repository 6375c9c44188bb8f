"""Searching within a chat (`GET /sessions/{id}/chats/{chatId}/search`) end to end through HTTP: whole
words in any order, a part of a word or a number, nothing from another chat or another user, and bad
input as a clear 422.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import new_phone
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def found(client: httpx.AsyncClient, sid: str, chat: str, q: str) -> list[str]:
    response = await client.get(f"/sessions/{sid}/chats/{chat}/search", params={"q": q})
    assert response.status_code == 200, response.text
    assert response.json()["nextCursor"] is None
    return [m["text"] for m in response.json()["items"]]


async def test_a_chat_is_searched_by_words_and_parts_of_them(stack: Stack) -> None:
    user, contact, other = new_user(), "+15550006001", "+15550006002"
    async with stack.client(user) as client:
        sid = (await client.post("/sessions", json={})).json()["id"]
        await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
        scan = {"phone": new_phone(), "displayName": "Shop"}
        assert (await client.post(f"/simulator/sessions/{sid}/scan", json=scan)).status_code == 200
        await eventually(
            lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["status"] == "connected", 30
        )
        said = [
            (contact, "Is the shop open on Sunday?"),
            (contact, "My order number is 48213"),
            (contact, "Ünïcode Straße works too"),
            (other, "The shop next door is open"),
        ]
        for sender, text in said:
            got = await client.post(
                f"/simulator/sessions/{sid}/incoming", json={"from": sender, "text": text}
            )
            assert got.status_code == 200, got.text
        chat = "15550006001@s.whatsapp.net"
        # Stored once the last message of each chat is (they are written in order).
        await eventually(lambda: found(client, sid, chat, "works"), lambda texts: len(texts) == 1, 15)
        await eventually(lambda: found(client, sid, "15550006002", "door"), lambda texts: len(texts) == 1, 15)
        assert await found(client, sid, chat, "open shop") == ["Is the shop open on Sunday?"]  # any order
        assert await found(client, sid, chat, "SUNDAY") == ["Is the shop open on Sunday?"]
        assert await found(client, sid, chat, "8213") == ["My order number is 48213"]  # part of a number
        assert await found(client, sid, chat, "straße") == ["Ünïcode Straße works too"]
        assert await found(client, sid, chat, "100%_") == []  # LIKE's wildcards are only characters
        assert await found(client, sid, chat, "closed") == []
        assert await found(client, sid, "15550006002", "door") == ["The shop next door is open"]
        # The contact's own phone number addresses the chat too; a chat never seen finds nothing.
        assert await found(client, sid, "+15550006001", "order") == ["My order number is 48213"]
        assert await found(client, sid, "+15550006999", "shop") == []

        for bad in ({"q": ""}, {"q": "x" * 201}, {}, {"q": "shop", "limit": 0}):
            refused = await client.get(f"/sessions/{sid}/chats/{chat}/search", params=bad)
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", bad

    async with stack.client(new_user()) as stranger:
        response = await stranger.get(f"/sessions/{sid}/chats/{chat}/search", params={"q": "shop"})
        assert response.status_code == 404
