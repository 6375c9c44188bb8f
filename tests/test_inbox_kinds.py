"""The inbox over HTTP and WebSocket, against the simulated network: every message kind typed, direct
messages only by default (no chat the API cannot open), names, one chat per person whether WhatsApp
addresses them by phone number or by LID, and our own media downloadable."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import media_samples
from tests.apikit import Stack, api_stack, new_user, websocket
from tests.raykit import eventually, fetchval, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Carol\nTEL;type=CELL;waid=15551230003:+15551230003\nEND:VCARD"


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


def new_phone() -> str:
    return f"+1415556{random.randint(1000, 9999)}"


async def paired(client: httpx.AsyncClient) -> str:
    created = await client.post("/sessions", json={})
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]

    async def status() -> str:
        return str((await client.get(f"/sessions/{sid}/status")).json()["status"])

    await eventually(status, lambda s: s == "qr_ready", 30)
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": new_phone()})
    assert scanned.status_code == 200, scanned.text
    await eventually(status, lambda s: s == "connected", 30)
    return sid


async def incoming(client: httpx.AsyncClient, sid: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/simulator/sessions/{sid}/incoming", json=body)
    assert response.status_code == 200, response.text
    got: dict[str, Any] = response.json()
    return got


async def messages(client: httpx.AsyncClient, sid: str, chat: str) -> list[dict[str, Any]]:
    response = await client.get(f"/sessions/{sid}/chats/{chat}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def chats(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    response = await client.get(f"/sessions/{sid}/chats")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_every_kind_reaches_the_socket_and_the_store_typed(stack: Stack, postgres_server: str) -> None:
    user, contact = new_user(), "15551230001@s.whatsapp.net"
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = await paired(client)
        sent = [
            await incoming(
                client,
                sid,
                **{"from": contact},
                location={"latitude": 48.8584, "longitude": 2.2945, "name": "Eiffel"},
            ),
            await incoming(
                client, sid, **{"from": contact}, contacts=[{"displayName": "Carol", "vcard": VCARD}]
            ),
            await incoming(
                client,
                sid,
                **{"from": contact},
                poll={"question": "Lunch?", "options": ["Pizza", "Sushi"], "selectable": 1},
            ),
            await incoming(
                client, sid, **{"from": contact}, media={"type": "sticker", "mimetype": "image/webp"}
            ),
            await incoming(client, sid, **{"from": contact}, media={"type": "video", "videoNote": True}),
            await incoming(
                client, sid, **{"from": contact}, text="only once", media={"type": "image"}, viewOnce=True
            ),
        ]
        reply = await incoming(client, sid, **{"from": contact}, text="agreed", quotedId=sent[2]["id"])
        for item in [*sent, reply]:
            await ws.wait_for(lambda f, mid=item["id"]: f["type"] == "message" and f["message"]["id"] == mid)

        stored = {m["id"]: m for m in await messages(client, sid, contact)}
        frames = {f["message"]["id"]: f["message"] for f in ws.of("message", sid)}
        location, card, poll, sticker, note, once = (stored[m["id"]] for m in sent)

        assert location["type"] == "location" and location["summary"] == "📍 Eiffel"
        assert location["location"] == {
            "latitude": 48.8584, "longitude": 2.2945, "name": "Eiffel",
            "address": None, "url": None, "live": False,
        }  # fmt: skip
        assert (card["type"], card["contacts"]) == ("contact", [{"displayName": "Carol", "vcard": VCARD}])
        assert poll["poll"] == {
            "question": "Lunch?",
            "options": ["Pizza", "Sushi"],
            "selectable": 1,
            "tally": [{"option": "Pizza", "votes": 0}, {"option": "Sushi", "votes": 0}],
            "votes": [],
        }
        assert (sticker["type"], sticker["summary"]) == ("sticker", "Sticker")
        assert (note["type"], note["media"]["videoNote"], note["summary"]) == ("video", True, "Video message")
        assert (once["type"], once["viewOnce"], once["text"], once["summary"]) == (
            "image", True, None, "View once photo"
        )  # fmt: skip
        assert stored[reply["id"]]["quotedId"] == sent[2]["id"]
        # The socket said the same as the store.
        assert all(frames[i] == stored[i] for i in stored)
        # Nothing arrives as an empty `other`; a view-once media cannot be fetched, and nothing of it is kept.
        assert all(m["type"] != "other" or m["summary"] for m in stored.values())
        gone = await client.get(f"/sessions/{sid}/chats/{contact}/messages/{once['id']}/media")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "media_not_available"
        kept = await fetchval(
            postgres_server,
            "SELECT row(text, media_ref)::text FROM message WHERE session_id = $1::uuid AND id = $2",
            sid,
            once["id"],
        )
        assert kept == "(,)"
        served = await client.get(f"/sessions/{sid}/chats/{contact}/messages/{sticker['id']}/media")
        assert served.status_code == 200 and served.content.startswith(b"RIFF")


async def test_direct_messages_only_and_no_chat_that_cannot_be_opened(
    stack: Stack, postgres_server: str
) -> None:
    user, friend = new_user(), "15551230002@s.whatsapp.net"
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = await paired(client)
        elsewhere = [
            {"from": "120363012345678901@g.us", "text": "group", "subject": "Family", "pushName": "Bob"},
            {"from": "status@broadcast", "text": "my status", "sender": "+15551230009"},
            {"from": "120363999999999999@newsletter", "text": "channel post"},
            {"from": "867051314767696@bot", "text": "Meta AI"},
            {"from": "0@s.whatsapp.net", "text": "WhatsApp notice"},
        ]
        for body in elsewhere:
            await incoming(client, sid, **body)
        listed = await incoming(
            client, sid, **{"from": "1700000000@broadcast"}, sender="+15551230005", text="to my list"
        )
        direct = await incoming(client, sid, **{"from": friend}, text="hi", pushName="Frida")
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == direct["id"])

        listing = await chats(client, sid)

        # A broadcast list's message is the sender's direct message, as on the phone; the rest is dropped
        # (the pairing's history sync holds a group too: dropped as well).
        ids = {c["id"] for c in listing}
        assert {"15551230002@s.whatsapp.net", "15551230005@s.whatsapp.net"} <= ids
        assert all(i.endswith("@s.whatsapp.net") and i.partition("@")[0].isdigit() for i in ids), ids
        assert listed["chatId"] == "15551230005@s.whatsapp.net"
        assert {f["message"]["chatId"] for f in ws.of("message", sid)} == {
            "15551230002@s.whatsapp.net",
            "15551230005@s.whatsapp.net",
        }
        for chat in listing:
            assert (await client.get(f"/sessions/{sid}/chats/{chat['id']}/messages")).status_code == 200
        stored = await fetchval(
            postgres_server,
            "SELECT count(*) FROM chat WHERE session_id = $1::uuid AND NOT id LIKE '%@s.whatsapp.net'",
            sid,
        )
        assert stored == 0


async def test_names_address_book_then_push_name_then_number(stack: Stack) -> None:
    user = new_user()
    named, pushed, bare = (
        "15551230011@s.whatsapp.net",
        "15551230012@s.whatsapp.net",
        "15551230013@s.whatsapp.net",
    )
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = await paired(client)
        await incoming(client, sid, **{"from": named}, text="hello", pushName="Dee (own name)")
        await incoming(client, sid, **{"from": pushed}, text="hello", pushName="Pete")
        last = await incoming(client, sid, **{"from": bare}, text="hello")
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == last["id"])

        book = await client.post(
            f"/simulator/sessions/{sid}/contacts", json={"jid": named, "name": "Dee Smith"}
        )
        assert book.status_code == 204, book.text
        frame = await ws.wait_for(lambda f: f["type"] == "chat" and f.get("chatId") == named)
        again = await incoming(client, sid, **{"from": named}, text="again", pushName="Dee (own name)")
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == again["id"])

        names = {c["id"]: c["name"] for c in await chats(client, sid)}

        assert frame["name"] == "Dee Smith"
        # The address book's name stays when the contact's own name comes again.
        assert {k: names[k] for k in (named, pushed, bare)} == {
            named: "Dee Smith",
            pushed: "Pete",
            bare: "+15551230013",
        }


async def theirs(client: httpx.AsyncClient, sid: str, *ids: str) -> list[str]:
    """The listed chats among `ids` (the pairing's history sync adds chats of its own)."""
    return [c["id"] for c in await chats(client, sid) if c["id"] in ids]


async def test_one_chat_per_person_whether_addressed_by_number_or_lid(
    stack: Stack, postgres_server: str
) -> None:
    user, pn, lid = new_user(), "15551230021@s.whatsapp.net", "210987654321098@lid"
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = await paired(client)
        # WhatsApp starts addressing this contact by LID, without telling the number yet.
        hidden = await client.post(
            f"/simulator/sessions/{sid}/contacts", json={"jid": pn, "lid": lid, "revealLid": False}
        )
        assert hidden.status_code == 204, hidden.text
        early = await incoming(client, sid, **{"from": pn}, text="from a lid")
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == early["id"])
        assert await theirs(client, sid, pn, lid) == [lid]

        revealed = await client.post(
            f"/simulator/sessions/{sid}/contacts", json={"jid": pn, "revealLid": True}
        )
        assert revealed.status_code == 204
        await eventually(lambda: theirs(client, sid, pn, lid), lambda ids: ids == [pn], 15)
        later = await incoming(client, sid, **{"from": pn}, text="by number now", media={"type": "image"})
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == later["id"])
        # Our reply goes to the number; its receipts come back addressed to the LID chat.
        reply = await client.post(f"/sessions/{sid}/send/text", json={"to": pn, "text": "got both"})
        assert reply.status_code == 200, reply.text
        rid = reply.json()["id"]

        async def ours() -> dict[str, Any]:
            return next(m for m in await messages(client, sid, pn) if m["id"] == rid)

        read = await eventually(ours, lambda m: m["status"] == "read", 15)
        # Sent to the LID, it is still the number's chat.
        by_lid = await client.post(f"/sessions/{sid}/send/text", json={"to": lid, "text": "and by lid"})
        assert by_lid.status_code == 200, by_lid.text
        await eventually(
            lambda: messages(client, sid, pn), lambda ms: any(m["id"] == by_lid.json()["id"] for m in ms), 15
        )

        in_chat = await messages(client, sid, pn)
        assert [m["text"] for m in reversed(in_chat)] == [
            "from a lid",
            "by number now",
            "got both",
            "and by lid",
        ]
        assert {m["chatId"] for m in in_chat} == {pn} and read["status"] == "read"
        assert await theirs(client, sid, pn, lid) == [pn]
        # A LID in the route finds the same chat, and its media.
        assert [m["id"] for m in await messages(client, sid, lid)] == [m["id"] for m in in_chat]
        by_lid_media = await client.get(f"/sessions/{sid}/chats/{lid}/messages/{later['id']}/media")
        assert by_lid_media.status_code == 200 and by_lid_media.content.startswith(b"\xff\xd8")
        link = await fetchval(
            postgres_server, "SELECT pn FROM identity_link WHERE session_id = $1::uuid AND lid = $2", sid, lid
        )
        assert link == pn


async def test_media_we_send_downloads_like_media_we_receive(stack: Stack) -> None:
    user, to = new_user(), "15551230031@s.whatsapp.net"
    png = media_samples.image("png")
    async with stack.client(user) as client:
        sid = await paired(client)
        sent = await client.post(
            f"/sessions/{sid}/send/media",
            data={"to": to, "caption": "ours"},
            files={"file": ("dot.png", png, "image/png")},
        )
        assert sent.status_code == 200, sent.text
        mid = sent.json()["id"]

        async def download() -> httpx.Response:
            return await client.get(f"/sessions/{sid}/chats/{to}/messages/{mid}/media")

        got = await eventually(download, lambda r: r.status_code == 200, 15)

        assert got.content == png and got.headers["content-type"] == "image/png"
