"""Helpers for the tests of reads from the store: a connected session with chats, messages, media and a
cached picture, and one round of every read a client makes, as a user sees it over HTTP."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import httpx

from tests.raykit import eventually, fetchval

# A heartbeat every 0.5 s: a session whose process died stops being `live` within 1.5 s.
FAST_BEAT = {"heartbeat_s": 0.5}


@dataclass(frozen=True)
class Inbox:
    """A connected session and what is stored for it."""

    sid: str
    phone: str
    with_picture: str  # a chat with a picture, cached in the store
    with_media: str  # a chat whose last message is an image


async def status(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{sid}/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def connected_inbox(client: httpx.AsyncClient, database_url: str, *, slot: int = 1) -> Inbox:
    """A session paired through the API, with two chats (one with a picture, one with an image)."""
    created = await client.post("/sessions", json={"slot": slot})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    await eventually(lambda: status(client, sid), lambda s: s["status"] == "qr_ready" and s["qr"], 30)
    phone = f"+1415556{random.randint(1000, 9999)}"
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
    assert scanned.status_code == 200, scanned.text
    await eventually(lambda: status(client, sid), lambda s: s["status"] == "connected" and s["live"], 30)

    pictured, media = "15551250001@s.whatsapp.net", "15551250002@s.whatsapp.net"
    contact = await client.post(
        f"/simulator/sessions/{sid}/contacts", json={"jid": pictured, "picture": True}
    )
    assert contact.status_code == 204, contact.text
    for body in (
        {"from": pictured, "text": "hello from a face"},
        {
            "from": media,
            "media": {"type": "image", "mimetype": "image/jpeg", "fileName": "a.jpg", "size": 4321},
        },
    ):
        sent = await client.post(f"/simulator/sessions/{sid}/incoming", json=body)
        assert sent.status_code == 200, sent.text

    async def listed() -> dict[str, Any]:
        response = await client.get(f"/sessions/{sid}/chats")
        return {c["id"]: c for c in response.json()["items"]}

    # The first listings ask the session for the pictures; the URL shows once it has one.
    chats = await eventually(listed, lambda c: media in c and (c.get(pictured) or {}).get("pictureUrl"), 20)
    picture = await client.get(chats[pictured]["pictureUrl"])  # downloaded by the session, then cached
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG"), picture.text

    async def cached() -> int:
        return int(
            await fetchval(
                database_url, "SELECT count(*) FROM picture_cache WHERE session_id = $1::uuid", sid
            )
        )

    await eventually(cached, lambda n: n == 1, 10)
    return Inbox(sid, phone, pictured, media)


@dataclass(frozen=True)
class Reads:
    """One round of every read: the status, then what the inbox shows."""

    status: dict[str, Any]
    chats: Any
    messages: dict[str, Any]
    picture: bytes


async def read_all(client: httpx.AsyncClient, inbox: Inbox) -> Reads:
    """Each read once; every answer must be a 200."""
    sid = inbox.sid
    responses = {
        "status": await client.get(f"/sessions/{sid}/status"),
        "chats": await client.get(f"/sessions/{sid}/chats"),
        "picture": await client.get(f"/sessions/{sid}/chats/{inbox.with_picture}/picture"),
    }
    for chat in (inbox.with_picture, inbox.with_media):
        responses[chat] = await client.get(f"/sessions/{sid}/chats/{chat}/messages")
    for name, response in responses.items():
        assert response.status_code == 200, (name, response.status_code, response.text)
    return Reads(
        status=responses["status"].json(),
        chats=responses["chats"].json(),
        messages={chat: responses[chat].json() for chat in (inbox.with_picture, inbox.with_media)},
        picture=responses["picture"].content,
    )


def same_inbox(got: Reads, before: Reads) -> bool:
    """The same chats, messages (media metadata included) and picture; the same number and phone."""
    keep = ("id", "slot", "phone", "displayName", "profilePicUrl")
    return (got.chats, got.messages, got.picture) == (before.chats, before.messages, before.picture) and {
        k: got.status[k] for k in keep
    } == {k: before.status[k] for k in keep}
