"""End to end over HTTP and a real WebSocket: reading a chat, reactions, a contact addressed by LID,
typing and the contact's presence, each with what the simulated phone and network do and see (edits and
deletions: tests/test_inbox_edits.py).

One stack per module (local Ray, registry, uvicorn); each test works in its own chat of one paired session.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.apikit import Stack, api_stack, websocket
from tests.inboxkit import chat_of, error_code, incoming, new_contact, pair_session, sent, stored, update
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


@pytest.fixture(scope="module")
async def paired(stack: Stack) -> tuple[str, str, str]:
    """(user, a connected session, one still showing its QR)."""
    return await pair_session(stack)


# ------------------------------------------------------------------------------------------ read state


async def test_reading_a_chat_here_and_on_the_phone(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        for text in ("one", "two", "three"):
            await incoming(client, sid, phone, text=text, pushName="Cleo")
        await eventually(lambda: chat_of(client, sid, chat), lambda c: c["unreadCount"] == 3, 10)

        read = await client.post(f"/sessions/{sid}/chats/{phone}/read")

        assert read.status_code == 200, read.text
        assert read.json() == {"chatId": chat, "unreadCount": 0, "readReceipts": 3}
        frame = await ws.wait_for(lambda f: f["type"] == "chat" and f["chatId"] == chat)
        assert frame["unreadCount"] == 0 and frame["name"] == "Cleo" and frame["cursor"]
        assert (await chat_of(client, sid, chat))["unreadCount"] == 0

        # Counts go up again with new messages, and reading on the phone clears them.
        seen = len(ws.items)
        await incoming(client, sid, phone, text="four")
        await eventually(lambda: chat_of(client, sid, chat), lambda c: c["unreadCount"] == 1, 10)
        on_phone = await client.post(f"/simulator/sessions/{sid}/read", json={"chatId": phone})
        assert on_phone.status_code == 204, on_phone.text
        cleared = await ws.wait_for(lambda f: f["type"] == "chat" and f["chatId"] == chat, after=seen)
        assert cleared["unreadCount"] == 0
        assert (await chat_of(client, sid, chat))["unreadCount"] == 0

        # Read on the phone up to a moment: what came after stays unread.
        await incoming(client, sid, phone, text="five")
        cut = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await incoming(client, sid, phone, text="six")
        await eventually(lambda: chat_of(client, sid, chat), lambda c: c["unreadCount"] == 2, 10)
        partly = await client.post(
            f"/simulator/sessions/{sid}/read", json={"chatId": phone, "upTo": cut.isoformat()}
        )
        assert partly.status_code == 204
        await eventually(lambda: chat_of(client, sid, chat), lambda c: c["unreadCount"] == 1, 10)


async def test_read_on_a_session_that_is_not_connected_is_409(
    stack: Stack, paired: tuple[str, str, str]
) -> None:
    user, _, waiting = paired
    async with stack.client(user) as client:
        read = await client.post(f"/sessions/{waiting}/chats/+15550001111/read")
        typing = await client.post(f"/sessions/{waiting}/chats/+15550001111/typing", json={"state": "paused"})
    assert (read.status_code, error_code(read)) == (409, "session_not_connected")
    assert (typing.status_code, error_code(typing)) == (409, "session_not_connected")


async def test_a_contact_addressed_by_lid_is_one_chat_here_too(
    stack: Stack, paired: tuple[str, str, str]
) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    lid = f"{random.randint(10**14, 10**15 - 1)}@lid"
    async with stack.client(user) as client:
        linked = await client.post(f"/simulator/sessions/{sid}/contacts", json={"jid": phone, "lid": lid})
        assert linked.status_code == 204, linked.text
        message = await incoming(client, sid, phone, text="by number")
        await eventually(lambda: chat_of(client, sid, chat), lambda c: c["unreadCount"] == 1, 10)

        read = await client.post(f"/sessions/{sid}/chats/{lid}/read")
        reacted = await client.post(
            f"/sessions/{sid}/chats/{lid}/messages/{message['id']}/reaction", json={"emoji": "👍"}
        )
        body = {"chatId": lid, "messageId": message["id"], "emoji": "🙌"}
        theirs = await client.post(f"/simulator/sessions/{sid}/react", json=body)

        assert read.status_code == 200 and read.json()["chatId"] == chat
        assert reacted.status_code == 200 and reacted.json()["chatId"] == chat
        assert theirs.status_code == 204
        stored_message = await eventually(
            lambda: stored(client, sid, chat, message["id"]), lambda m: len(m["reactions"]) == 2, 10
        )
        assert {r["emoji"] for r in stored_message["reactions"]} == {"👍", "🙌"}
        assert chat in {r["sender"] for r in stored_message["reactions"]}
        assert (await chat_of(client, sid, chat))["unreadCount"] == 0


# ------------------------------------------------------------------------------------------ reactions


async def test_reactions_both_ways_one_per_person(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        message = await incoming(client, sid, phone, text="lunch?")
        url = f"/sessions/{sid}/chats/{phone}/messages/{message['id']}/reaction"
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == message["id"])

        ours = await client.post(url, json={"emoji": "👍"})

        assert ours.status_code == 200, ours.text
        (mine,) = ours.json()["reactions"]
        assert mine["emoji"] == "👍" and mine["sender"].endswith("@s.whatsapp.net") and mine["sender"] != chat
        frame = await update(ws, message["id"], "reaction")
        assert frame["chatId"] == chat and frame["message"]["reactions"] == [mine]

        # The contact reacts too, then changes their mind: one reaction per person, the latest.
        seen = len(ws.items)
        body = {"chatId": phone, "messageId": message["id"], "emoji": "😂"}
        assert (await client.post(f"/simulator/sessions/{sid}/react", json=body)).status_code == 204
        await client.post(f"/simulator/sessions/{sid}/react", json=body | {"emoji": "❤️"})
        await eventually(
            lambda: stored(client, sid, chat, message["id"]),
            lambda m: (
                {(r["sender"], r["emoji"]) for r in m["reactions"]} == {(mine["sender"], "👍"), (chat, "❤️")}
            ),
            10,
        )
        await update(ws, message["id"], "reaction", after=seen)

        # Ours removed: theirs stays. The network saw our reaction and its removal.
        removed = await client.post(url, json={"emoji": ""})
        assert removed.status_code == 200 and [r["emoji"] for r in removed.json()["reactions"]] == ["❤️"]
        await eventually(
            lambda: stored(client, sid, chat, message["id"]),
            lambda m: [(r["sender"], r["emoji"]) for r in m["reactions"]] == [(chat, "❤️")],
            10,
        )
        actions = [(s["action"], s["id"], s["emoji"]) for s in await sent(client, sid, chat)]
        assert actions == [("reaction", message["id"], "👍"), ("reaction", message["id"], "")]

        bad = await client.post(url, json={"emoji": "hello"})
        assert (bad.status_code, error_code(bad)) == (422, "invalid_request")
        unknown = await client.post(
            f"/sessions/{sid}/chats/{phone}/messages/3EB0NOSUCHMESSAGE/reaction", json={"emoji": "👍"}
        )
        assert (unknown.status_code, error_code(unknown)) == (404, "message_not_found")


# ------------------------------------------------------------------------------------------ typing, presence


async def test_typing_is_coalesced_and_rate_limited(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    url = f"/sessions/{sid}/chats/{phone}/typing"
    async with stack.client(user) as client:
        answers = [(await client.post(url, json={"state": "composing"})).status_code for _ in range(5)]
        too_soon = await client.post(url, json={"state": "paused"})
        await asyncio.sleep(0.6)
        paused = await client.post(url, json={"state": "paused"})
        bad = await client.post(url, json={"state": "dancing"})
        states = [s["state"] for s in await sent(client, sid, chat) if s["action"] == "presence"]

    assert answers == [204] * 5
    assert (too_soon.status_code, error_code(too_soon)) == (429, "rate_limited")
    assert too_soon.headers["Retry-After"] == "1"
    assert paused.status_code == 204
    assert (bad.status_code, error_code(bad)) == (422, "invalid_request")
    assert states == ["composing", "paused"]


async def test_the_contacts_typing_and_online_frames(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    control = f"/simulator/sessions/{sid}/presence"
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        for _ in range(3):
            assert (
                await client.post(control, json={"chatId": phone, "state": "composing"})
            ).status_code == 204
        await client.post(control, json={"chatId": phone, "state": "paused"})
        seen_at = "2026-01-31T12:00:00Z"
        await asyncio.sleep(0.6)
        await client.post(control, json={"chatId": phone, "state": "unavailable", "lastSeen": seen_at})

        last = await ws.wait_for(lambda f: f["type"] == "presence" and f["state"] == "unavailable")
        frames = [f for f in ws.items if f["type"] == "presence"]

    # Repeats coalesce; the pause that came too soon arrives once the gap has passed.
    assert [f["state"] for f in frames] == ["composing", "paused", "unavailable"]
    assert all(f["chatId"] == chat and f["sessionId"] == sid for f in frames)
    assert last["lastSeen"] == "2026-01-31T12:00:00.000Z"
    assert set(last) == {"type", "sessionId", "chatId", "state", "lastSeen", "cursor"}


# ------------------------------------------------------------------------------------------ the contract


async def test_the_openapi_document_describes_the_new_routes_fields_and_frames(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as anon:
        doc = (await anon.get("/openapi.json")).json()
    paths = doc["paths"]
    message = "/sessions/{id}/chats/{chatId}/messages/{messageId}"
    assert set(paths[message]) == {"patch", "delete"}
    assert "post" in paths[message + "/reaction"]
    assert "post" in paths["/sessions/{id}/chats/{chatId}/read"]
    assert set(paths["/sessions/{id}/chats/{chatId}/typing"]["post"]["responses"]) >= {
        "204",
        "409",
        "422",
        "429",
    }
    schemas = doc["components"]["schemas"]
    assert {"reactions", "editedAt", "summary"} <= set(schemas["MessageOut"]["properties"])
    assert set(schemas["ChatFrame"]["properties"]) == {"chatId", "unreadCount", "name", "group"}
    assert set(schemas["MessageUpdateFrame"]["properties"]) == {"chatId", "messageId", "change", "message"}
    assert set(schemas["PresenceFrame"]["properties"]) == {"chatId", "state", "lastSeen"}
    assert set(doc["x-websocket-frames"]) == {"chat", "message_update", "presence", "call"}
    for control in ("react", "edit", "revoke", "read", "presence"):
        assert f"/simulator/sessions/{{id}}/{control}" in paths
