"""DESIGN.md's "A slot belongs to its phone" and "Every open client stays right without reloading", end to
end through HTTP and real WebSockets: a re-link by another phone starts afresh, the same phone keeps
everything, a history sync reaches open sockets as `chat` frames, a deletion as `session_deleted`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apikit import Stack, api_stack, new_user, websocket
from tests.consolekit import new_phone
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def status_of(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{sid}/status")
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


async def pair(client: httpx.AsyncClient, sid: str, phone: str) -> None:
    await eventually(lambda: status_of(client, sid), lambda s: s["status"] == "qr_ready", 30)
    scanned = await client.post(
        f"/simulator/sessions/{sid}/scan", json={"phone": phone, "displayName": "Ana"}
    )
    assert scanned.status_code == 200, scanned.text
    await eventually(lambda: status_of(client, sid), lambda s: s["status"] == "connected", 30)


async def chat_ids(client: httpx.AsyncClient, sid: str) -> list[str]:
    response = await client.get(f"/sessions/{sid}/chats")
    response.raise_for_status()
    return [chat["id"] for chat in response.json()["items"]]


async def receive(client: httpx.AsyncClient, sid: str, sender: str, text: str) -> None:
    got = await client.post(f"/simulator/sessions/{sid}/incoming", json={"from": sender, "text": text})
    assert got.status_code == 200, got.text


async def unlink_and_rescan(client: httpx.AsyncClient, sid: str, phone: str) -> dict[str, Any]:
    """The phone removes the device; the user presses Reconnect and `phone` scans. The unlinked status."""
    assert (await client.post(f"/simulator/sessions/{sid}/unlink")).status_code == 204
    unlinked = await eventually(lambda: status_of(client, sid), lambda s: s["reason"] == "logged_out", 30)
    assert (await client.post(f"/sessions/{sid}/reconnect")).status_code == 202
    await pair(client, sid, phone)
    return unlinked


def jid(phone: str) -> str:
    return phone.removeprefix("+") + "@s.whatsapp.net"


async def synced(client: httpx.AsyncClient, sid: str, contact: str) -> set[str]:
    """The chats once the pairing's history (2 direct chats; groups stay out of the inbox by default) and
    `contact`'s message are stored."""
    ids = await eventually(
        lambda: chat_ids(client, sid), lambda ids: jid(contact) in ids and len(ids) == 3, 15
    )
    return set(ids)


async def texts(client: httpx.AsyncClient, sid: str, contact: str) -> list[str]:
    response = await client.get(f"/sessions/{sid}/chats/{jid(contact)}/messages")
    assert response.status_code == 200, response.text
    return [m["text"] for m in response.json()["items"]]


async def test_another_phone_starts_the_slot_afresh(stack: Stack) -> None:
    user, phone_a, phone_b, contact = new_user(), new_phone(), new_phone(), new_phone()
    async with stack.client(user) as client:
        sid = (await client.post("/sessions", json={"slot": 2})).json()["id"]
        await pair(client, sid, phone_a)
        await receive(client, sid, contact, "hello A")
        chats_of_a = await synced(client, sid, contact)

        unlinked = await unlink_and_rescan(client, sid, phone_b)
        # While unlinked the session still says which phone keeps the chats.
        assert (unlinked["status"], unlinked["phone"]) == ("disconnected", phone_a)
        listed = {s["id"]: s for s in (await client.get("/sessions")).json()}
        assert listed[sid]["phone"] == phone_b
        # B's own history arrives; none of A's conversations is shown "via" B, messages and all.
        await receive(client, sid, contact, "hello B")
        chats_of_b = await synced(client, sid, contact)
        assert chats_of_b & chats_of_a == {jid(contact)}
        assert await texts(client, sid, contact) == ["hello B"]


async def test_the_same_phone_keeps_everything(stack: Stack) -> None:
    user, phone, contact = new_user(), new_phone(), new_phone()
    async with stack.client(user) as client:
        sid = (await client.post("/sessions", json={})).json()["id"]
        await pair(client, sid, phone)
        await receive(client, sid, contact, "still here")
        before = await synced(client, sid, contact)
        await unlink_and_rescan(client, sid, phone)
        # The phone's history sync comes again (2 more made-up chats); nothing was deleted.
        after = await eventually(lambda: chat_ids(client, sid), lambda ids: len(ids) == 5, 15)
        assert before <= set(after)
        assert await texts(client, sid, contact) == ["still here"]


async def test_a_phone_an_unlinked_slot_remembers_can_link_elsewhere(stack: Stack) -> None:
    user, phone = new_user(), new_phone()
    async with stack.client(user) as client:
        first = (await client.post("/sessions", json={"slot": 1})).json()["id"]
        await pair(client, first, phone)
        assert (await client.post(f"/simulator/sessions/{first}/unlink")).status_code == 204
        await eventually(lambda: status_of(client, first), lambda s: s["reason"] == "logged_out", 30)
        second = (await client.post("/sessions", json={"slot": 2})).json()["id"]
        await pair(client, second, phone)  # the remembered phone does not hold the number
        assert (await status_of(client, first))["phone"] == phone


async def test_a_history_sync_reaches_open_sockets_as_chat_frames(stack: Stack) -> None:
    user = new_user()
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = (await client.post("/sessions", json={})).json()["id"]
        await pair(client, sid, new_phone())
        # The pairing's own history sync (2 direct chats) reaches the socket too.
        paired = await eventually(lambda: chat_ids(client, sid), lambda ids: len(ids) == 2, 15)
        await ws.wait_for(lambda f: {f["chatId"] for f in ws.of("chat", sid)} >= set(paired))
        seen = len(ws.items)
        got = await client.post(f"/simulator/sessions/{sid}/history", json={"chats": 6, "messagesPerChat": 3})
        assert got.status_code == 200 and got.json()["chats"] == 6
        # 4 of the 6 are direct chats (the inbox leaves groups out by default).
        stored = await eventually(lambda: chat_ids(client, sid), lambda ids: len(ids) == 6, 15)
        added = set(stored) - set(paired)

        def framed() -> set[str]:
            return {f["chatId"] for f in ws.items[seen:] if f["type"] == "chat" and f["sessionId"] == sid}

        await ws.wait_for(lambda f: framed() == added, after=seen)
        frame = ws.of("chat", sid)[-1]
        assert set(frame) == {"type", "sessionId", "chatId", "unreadCount", "name", "cursor"}


async def test_deleting_a_session_tells_every_open_socket_of_its_user(stack: Stack) -> None:
    user, stranger = new_user(), new_user()
    async with stack.client(user) as client, stack.client(stranger) as other:
        sid = (await client.post("/sessions", json={})).json()["id"]
        kept = (await client.post("/sessions", json={})).json()["id"]
        theirs = (await other.post("/sessions", json={})).json()["id"]
        async with (
            websocket(stack, user) as everything,
            websocket(stack, user, session_id=sid) as just_it,
            websocket(stack, user, session_id=kept) as the_other_slot,
            websocket(stack, stranger) as strangers,
        ):
            await everything.wait_for(lambda f: f["type"] == "status" and f["sessionId"] == sid)
            cursor = everything.items[-1]["cursor"]
            assert (await client.delete(f"/sessions/{sid}")).status_code == 204
            for ws in (everything, just_it):
                frame = await ws.wait_for(lambda f: f["type"] == "session_deleted")
                assert set(frame) == {"type", "sessionId", "cursor"} and frame["sessionId"] == sid
            # A socket resuming from before the deletion gets it by replay too.
            async with websocket(stack, user, cursor=cursor) as resumed:
                await resumed.wait_for(lambda f: f["type"] == "session_deleted" and f["sessionId"] == sid)
            assert not the_other_slot.of("session_deleted") and not strangers.of("session_deleted")
        await other.delete(f"/sessions/{theirs}")
