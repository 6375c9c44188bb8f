"""End to end over HTTP and a real WebSocket: our edits and deletions for everyone, the refusals, and the
contact's edits and deletions, each checked in what the simulated network received and in PostgreSQL.
One stack per module (local Ray, registry, uvicorn); each test works in its own chat of one paired session.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kernel.settings import asyncpg_dsn
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
    return await pair_session(stack)


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
