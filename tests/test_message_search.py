"""Searching within a chat (`GET /sessions/{id}/chats/{chatId}/search`) and the whole inbox (`GET
/inbox/search`) end to end through HTTP: whole words in any order, a part of a word, a name or a number,
nothing from another chat or another user, bad input as a clear 422, and the GIN indexes in the plans.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from kernel.settings import asyncpg_dsn
from persistence.inbox_search import CHAT_SEARCH, MESSAGE_SEARCH
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


async def linked(client: httpx.AsyncClient, slot: int) -> str:
    sid = (await client.post("/sessions", json={"slot": slot})).json()["id"]
    await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
    assert (
        await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": new_phone()})
    ).status_code == 200
    await eventually(
        lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["status"] == "connected", 30
    )
    return sid


async def inbox_search(client: httpx.AsyncClient, q: str) -> tuple[list[str], list[str]]:
    """The chats (ids) and messages (texts) `GET /inbox/search` finds."""
    response = await client.get("/inbox/search", params={"q": q})
    assert response.status_code == 200, response.text
    body = response.json()
    return [c["id"] for c in body["chats"]], [m["message"]["text"] for m in body["messages"]]


async def test_the_whole_inbox_is_searched_by_name_number_and_words(stack: Stack) -> None:
    user = new_user()
    async with stack.client(user) as client:
        first, second = await linked(client, 1), await linked(client, 2)
        said = [
            (first, "+4915112340077", "Grüße aus Köln", "Jürgen Weiß"),
            (first, "+15550006101", "Quokka invoice 7731 is paid", "Ana Lima"),
            (second, "+442079460958", "The quokka invoice arrived", None),
        ]
        for sid, sender, text, name in said:
            body = {"from": sender, "text": text} | ({"pushName": name} if name else {})
            got = await client.post(f"/simulator/sessions/{sid}/incoming", json=body)
            assert got.status_code == 200, got.text
        await eventually(lambda: inbox_search(client, "quokka invoice"), lambda found: len(found[1]) == 2, 15)
        weiss, ana, london = (
            "4915112340077@s.whatsapp.net",
            "15550006101@s.whatsapp.net",
            "442079460958@s.whatsapp.net",
        )
        # By a part of a name, any case; by a number as people write it (with or without the trunk 0).
        assert (await inbox_search(client, "jürgen"))[0] == [weiss]
        assert (await inbox_search(client, "LIM"))[0] == [ana]
        assert (await inbox_search(client, "+49 151 1234"))[0] == [weiss]
        assert (await inbox_search(client, "0151 1234"))[0] == [weiss]
        assert (await inbox_search(client, "(555) 000-61"))[0] == [ana]
        assert (await inbox_search(client, "20 7946"))[0] == [london]  # a chat of the second number
        assert (await inbox_search(client, "12"))[0] == []  # too few digits to be a number
        # By words, across every chat and number, newest first.
        chats, texts = await inbox_search(client, "quokka invoice")
        assert chats == [] and texts == ["The quokka invoice arrived", "Quokka invoice 7731 is paid"]
        assert (await inbox_search(client, "köln grüße"))[1] == ["Grüße aus Köln"]
        assert await inbox_search(client, "50%_") == ([], [])
        for bad in ({"q": ""}, {"q": "x" * 201}, {}, {"q": "a\x00b"}, {"q": "ana", "limit": 101}):
            refused = await client.get("/inbox/search", params=bad)
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", bad

    async with stack.client(new_user()) as stranger:
        assert await inbox_search(stranger, "quokka") == ([], [])
        assert await inbox_search(stranger, "+49 151 1234") == ([], [])


# 20,000 chats and messages of one number, made in the database (rolled back afterwards).
_VOLUME = """
INSERT INTO whatsapp_session (id, user_id, slot, status) VALUES ($1, 'plan-test', 1, 'connected');
INSERT INTO chat (session_id, id, name, is_group, unread_count)
  SELECT $1, number || '@s.whatsapp.net', 'Contact ' || md5(g::text), false, 0
  FROM generate_series(1, 20000) g, LATERAL (SELECT (abs(hashtext(g::text)) % 90000000000 + 10000000000)::text
  AS number) n;
INSERT INTO message (session_id, chat_id, id, sender, from_me, ts, type, text, status)
  SELECT $1, c.id, 'm' || c.name, 'x', false, now(), 'text', 'message ' || c.name, 'sent'
  FROM chat c WHERE c.session_id = $1;
ANALYZE chat;
ANALYZE message;
"""


async def test_searches_are_served_by_the_gin_indexes(stack: Stack) -> None:
    """On a number with many chats, PostgreSQL plans the searches by name and by words on the
    migration's GIN indexes."""
    assert stack.settings.database_url
    conn = await asyncpg.connect(asyncpg_dsn(stack.settings.database_url), timeout=10)
    sid = uuid.uuid4()
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            # The number's 20,000 chats are walked faster than any index reads them on this small table:
            # with the table scan priced out, the searches go by the GIN indexes, not the number's rows.
            await conn.execute("SET LOCAL enable_seqscan = off")
            for statement in _VOLUME.strip().split(";\n"):
                await conn.execute(statement, *([sid] if "$1" in statement else []))
            plans = {
                "ix_chat_name_trgm": await conn.fetch(f"EXPLAIN {CHAT_SEARCH}", [sid], "%c4ca42%", None, 20),
                "ix_message_words": await conn.fetch(f"EXPLAIN {MESSAGE_SEARCH}", [sid], "invoice", 20),
            }
        finally:
            await tx.rollback()
    finally:
        await conn.close()
    for index, plan in plans.items():
        text = "\n".join(row[0] for row in plan)
        assert index in text, text
