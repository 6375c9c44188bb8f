"""End to end over HTTP and a real WebSocket: reading a chat, reactions, edits, deletions for everyone,
typing and the contact's presence, each with what the simulated phone and network do and see.

One stack per module (local Ray, registry, uvicorn); each test works in its own chat of one paired session.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from actors.config import asyncpg_dsn
from tests.apikit import Stack, WsFrames, api_stack, new_user, websocket
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def _status(client: httpx.AsyncClient, sid: str, status: str) -> None:
    async def get() -> dict[str, Any]:
        found: dict[str, Any] = (await client.get(f"/sessions/{sid}/status")).json()
        return found

    await eventually(get, lambda s: s.get("status") == status, 30)


@pytest.fixture(scope="module")
async def paired(stack: Stack) -> tuple[str, str, str]:
    """(user, a connected session, one still showing its QR)."""
    user = new_user()
    async with stack.client(user) as client:
        sid = (await client.post("/sessions", json={})).json()["id"]
        await _status(client, sid, "qr_ready")
        scanned = await client.post(
            f"/simulator/sessions/{sid}/scan", json={"phone": f"+1415559{random.randint(1000, 9999)}"}
        )
        assert scanned.status_code == 200, scanned.text
        await _status(client, sid, "connected")
        waiting = (await client.post("/sessions", json={})).json()["id"]
        await _status(client, waiting, "qr_ready")
    return user, sid, waiting


def new_contact() -> tuple[str, str]:
    digits = f"1555{random.randint(1000000, 9999999)}"
    return f"+{digits}", f"{digits}@s.whatsapp.net"


async def incoming(client: httpx.AsyncClient, sid: str, sender: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/simulator/sessions/{sid}/incoming", json={"from": sender, **body})
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()
    return message


async def stored(client: httpx.AsyncClient, sid: str, chat: str, message_id: str) -> dict[str, Any]:
    items = (await client.get(f"/sessions/{sid}/chats/{chat}/messages")).json()["items"]
    found: dict[str, Any] = next(m for m in items if m["id"] == message_id)
    return found


async def chat_of(client: httpx.AsyncClient, sid: str, chat: str) -> dict[str, Any]:
    items = (await client.get(f"/sessions/{sid}/chats", params={"limit": 500})).json()["items"]
    found: dict[str, Any] = next(c for c in items if c["id"] == chat)
    return found


async def sent(client: httpx.AsyncClient, sid: str, to: str) -> list[dict[str, Any]]:
    return [s for s in (await client.get(f"/simulator/sessions/{sid}/sent")).json() if s["to"] == to]


def update(ws: WsFrames, message_id: str, change: str, after: int = 0) -> Any:
    return ws.wait_for(
        lambda f: f["type"] == "message_update" and f["messageId"] == message_id and f["change"] == change,
        after=after,
    )


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


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


# ------------------------------------------------------------------------------------------ edits, deletions


async def _row(stack: Stack, sid: str, chat: str, message_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(asyncpg_dsn(stack.settings.database_url))
    try:
        row = await conn.fetchrow(
            "SELECT type, text, media, media_ref, content, summary, reactions, edited_at FROM message"
            " WHERE session_id = $1::uuid AND chat_id = $2 AND id = $3",
            sid,
            chat,
            message_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return row


async def test_our_edit_and_deletion_for_everyone(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        sent_text = await client.post(
            f"/sessions/{sid}/send/text", json={"to": phone, "text": "see you at 5"}
        )
        mid = sent_text.json()["id"]
        url = f"/sessions/{sid}/chats/{phone}/messages/{mid}"
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == mid)

        edited = await client.patch(url, json={"text": "see you at 6"})

        assert edited.status_code == 200, edited.text
        assert (edited.json()["id"], edited.json()["text"]) == (mid, "see you at 6")
        assert edited.json()["editedAt"]
        frame = await update(ws, mid, "edit")
        assert frame["message"]["text"] == "see you at 6" and frame["message"]["editedAt"]
        assert (await stored(client, sid, chat, mid))["text"] == "see you at 6"

        deleted = await client.delete(url)

        assert deleted.status_code == 200, deleted.text
        assert (deleted.json()["type"], deleted.json()["text"]) == ("revoked", None)
        frame = await update(ws, mid, "revoke")
        assert frame["message"]["type"] == "revoked" and frame["message"]["text"] is None
        row = await _row(stack, sid, chat, mid)
        assert row["type"] == "revoked"
        assert [row[c] for c in ("text", "media", "media_ref", "content", "summary", "reactions")] == [
            None
        ] * 6
        again = await client.delete(url)
        assert again.status_code == 200 and again.json()["type"] == "revoked"
        after = await client.patch(url, json={"text": "too late"})
        assert (after.status_code, error_code(after)) == (422, "not_editable")

        actions = [(s["action"], s["id"], s["text"]) for s in await sent(client, sid, chat)]
        assert actions == [
            ("message", mid, "see you at 5"),
            ("edit", mid, "see you at 6"),
            ("revoke", mid, None),
        ]


async def test_edit_and_delete_refuse_others_messages_and_old_ones(
    stack: Stack, paired: tuple[str, str, str]
) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client:
        theirs = await incoming(client, sid, phone, text="mine, not yours")
        await eventually(lambda: chat_of(client, sid, chat), lambda c: c["lastMessage"] is not None, 10)
        url = f"/sessions/{sid}/chats/{phone}/messages/{theirs['id']}"
        not_own = await client.patch(url, json={"text": "changed"})
        not_own_delete = await client.delete(url)
        blank = await client.patch(url, json={"text": "   "})
        # One of ours, sent 20 minutes ago (WhatsApp takes edits for 15).
        old_id = "3EB0OLD" + str(random.randint(10**9, 10**10))
        conn = await asyncpg.connect(asyncpg_dsn(stack.settings.database_url))
        try:
            await conn.execute(
                "INSERT INTO message (session_id, id, chat_id, sender, from_me, ts, type, text, status)"
                " VALUES ($1::uuid, $2, $3, 'me', true, $4, 'text', 'old', 'read')",
                sid,
                old_id,
                chat,
                datetime.now(UTC) - timedelta(minutes=20),
            )
        finally:
            await conn.close()
        too_old = await client.patch(f"/sessions/{sid}/chats/{phone}/messages/{old_id}", json={"text": "x"})
        unknown = await client.patch(f"/sessions/{sid}/chats/{phone}/messages/3EB0NOPE", json={"text": "x"})

    assert (not_own.status_code, error_code(not_own)) == (422, "not_own_message")
    assert (not_own_delete.status_code, error_code(not_own_delete)) == (422, "not_own_message")
    assert (blank.status_code, error_code(blank)) == (422, "invalid_request")
    assert (too_old.status_code, error_code(too_old)) == (422, "edit_window_closed")
    assert (unknown.status_code, error_code(unknown)) == (404, "message_not_found")


async def test_the_contact_edits_and_deletes_for_everyone(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        text = await incoming(client, sid, phone, text="meet at noon")
        media = {"type": "image", "mimetype": "image/jpeg", "fileName": "map.jpg", "size": 3000}
        photo = await incoming(client, sid, phone, media=media, text="here")
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == photo["id"])
        media_url = f"/sessions/{sid}/chats/{phone}/messages/{photo['id']}/media"
        assert (await client.get(media_url)).status_code == 200

        body = {"chatId": phone, "messageId": text["id"], "text": "meet at one"}
        assert (await client.post(f"/simulator/sessions/{sid}/edit", json=body)).status_code == 204
        edit = await update(ws, text["id"], "edit")
        assert (edit["message"]["id"], edit["message"]["text"]) == (text["id"], "meet at one")
        assert edit["message"]["editedAt"]
        body = {"chatId": phone, "messageId": photo["id"]}
        assert (await client.post(f"/simulator/sessions/{sid}/revoke", json=body)).status_code == 204
        revoke = await update(ws, photo["id"], "revoke")

        assert revoke["message"]["type"] == "revoked" and revoke["message"]["media"] is None
        assert revoke["message"]["text"] is None
        row = await _row(stack, sid, chat, photo["id"])
        assert row["type"] == "revoked"
        assert [row[c] for c in ("text", "media", "media_ref", "content", "summary")] == [None] * 5
        gone = await client.get(media_url)
        assert gone.status_code == 404, gone.text
        listed = await stored(client, sid, chat, text["id"])
        assert (listed["text"], listed["editedAt"]) == ("meet at one", edit["message"]["editedAt"])


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
    assert set(schemas["ChatFrame"]["properties"]) == {"chatId", "unreadCount", "name"}
    assert set(schemas["MessageUpdateFrame"]["properties"]) == {"chatId", "messageId", "change", "message"}
    assert set(schemas["PresenceFrame"]["properties"]) == {"chatId", "state", "lastSeen"}
    assert set(doc["x-websocket-frames"]) == {"chat", "message_update", "presence"}
    for control in ("react", "edit", "revoke", "read", "presence"):
        assert f"/simulator/sessions/{{id}}/{control}" in paths
