"""Chat and profile pictures over HTTP, against the simulated network: fetched on the first chats listing,
served by the bridge (never WhatsApp's expiring link), refreshed when that link expires, 404 when a chat
has none or does not exist."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from actors.pictures import PictureState, cdn_expiry
from tests.apikit import Stack, api_stack, new_user
from tests.raykit import eventually, fetchval, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def paired(client: httpx.AsyncClient) -> tuple[str, str]:
    """A connected session and its own JID."""
    created = await client.post("/sessions", json={})
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]

    async def status() -> str:
        return str((await client.get(f"/sessions/{sid}/status")).json()["status"])

    await eventually(status, lambda s: s == "qr_ready", 30)
    phone = f"1415557{random.randint(1000, 9999)}"
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": f"+{phone}"})
    assert scanned.status_code == 200, scanned.text
    await eventually(status, lambda s: s == "connected", 30)
    return sid, f"{phone}@s.whatsapp.net"


async def say(client: httpx.AsyncClient, sid: str, jid: str) -> None:
    sent = await client.post(f"/simulator/sessions/{sid}/incoming", json={"from": jid, "text": "hi"})
    assert sent.status_code == 200, sent.text

    async def listed() -> list[str]:
        return [c["id"] for c in (await client.get(f"/sessions/{sid}/chats")).json()["items"]]

    await eventually(listed, lambda ids: jid in ids, 15)


async def contact(client: httpx.AsyncClient, sid: str, **body: object) -> None:
    response = await client.post(f"/simulator/sessions/{sid}/contacts", json=body)
    assert response.status_code == 204, response.text


async def test_a_picture_is_fetched_on_listing_and_served_by_the_bridge(
    stack: Stack, postgres_server: str
) -> None:
    user, with_pic, without = new_user(), "15551240001@s.whatsapp.net", "15551240002@s.whatsapp.net"
    async with stack.client(user) as client, stack.client(new_user()) as stranger:
        sid, _own = await paired(client)
        await contact(client, sid, jid=with_pic, picture=True)
        await contact(client, sid, jid=without, picture=False)
        await say(client, sid, with_pic)
        await say(client, sid, without)

        async def urls() -> dict[str, str | None]:
            items = (await client.get(f"/sessions/{sid}/chats")).json()["items"]
            return {c["id"]: c["pictureUrl"] for c in items}

        listed = await eventually(urls, lambda u: u.get(with_pic) is not None, 15)
        picture = await client.get(str(listed[with_pic]))
        again = await client.get(str(listed[with_pic]))
        none = await client.get(f"/sessions/{sid}/chats/{without}/picture")
        unknown = await client.get(f"/sessions/{sid}/chats/15551249999@s.whatsapp.net/picture")
        theirs = await stranger.get(str(listed[with_pic]))
        merged = {c["id"]: c["pictureUrl"] for c in (await client.get("/inbox/chats")).json()["items"]}

        assert listed[with_pic] == f"/sessions/{sid}/chats/{with_pic}/picture"
        assert listed[without] is None
        assert (merged[with_pic], merged[without]) == (listed[with_pic], None)  # the merged inbox too
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content.startswith(b"\x89PNG") and again.content == picture.content
        assert none.status_code == 404 and none.json()["error"]["code"] == "picture_not_available"
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "chat_not_found"
        assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "session_not_found"
        # The store keeps WhatsApp's link (with its expiry) and id; the API never hands it out.
        cdn = await fetchval(
            postgres_server,
            "SELECT picture_url FROM chat WHERE session_id = $1::uuid AND id = $2",
            sid,
            with_pic,
        )
        assert "oe=" in cdn and cdn not in str(listed)


async def test_an_expired_link_is_refreshed_and_a_new_picture_shows(
    stack: Stack, postgres_server: str
) -> None:
    user, jid = new_user(), "15551240011@s.whatsapp.net"
    async with stack.client(user) as client:
        sid, _own = await paired(client)
        # WhatsApp's links now live one second.
        await contact(client, sid, jid=jid, picture=True, pictureTtlS=1)
        await say(client, sid, jid)
        first = await client.get(f"/sessions/{sid}/chats/{jid}/picture")
        link = await fetchval(
            postgres_server, "SELECT picture_url FROM chat WHERE session_id = $1::uuid AND id = $2", sid, jid
        )
        await asyncio.sleep(1.5)
        await contact(client, sid, jid=jid, picture=True)  # and the contact changes it
        second = await client.get(f"/sessions/{sid}/chats/{jid}/picture")

        async def stored() -> str:
            value = await fetchval(
                postgres_server,
                "SELECT picture_url FROM chat WHERE session_id = $1::uuid AND id = $2",
                sid,
                jid,
            )
            return str(value)

        fresh = await eventually(stored, lambda url: url != link, 10)

        assert first.status_code == 200 and second.status_code == 200, second.text
        assert second.content != first.content and second.content.startswith(b"\x89PNG")
        assert "oe=" in fresh


async def test_our_own_picture_is_the_sessions_profile_pic_url(stack: Stack) -> None:
    user = new_user()
    async with stack.client(user) as client:
        sid, own = await paired(client)
        before = (await client.get(f"/sessions/{sid}/status")).json()
        await contact(client, sid, jid="me", picture=True)
        # The login fetches our own picture: a reconnect picks up the new one.
        dropped = await client.post(f"/simulator/sessions/{sid}/drop")
        assert dropped.status_code == 204

        async def status() -> dict[str, object]:
            got: dict[str, object] = (await client.get(f"/sessions/{sid}/status")).json()
            return got

        after = await eventually(
            status, lambda s: s["status"] == "connected" and s["profilePicUrl"] is not None, 15
        )
        picture = await client.get(str(after["profilePicUrl"]))

        assert before["profilePicUrl"] is None
        assert after["profilePicUrl"] == f"/sessions/{sid}/chats/{own}/picture"
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


async def test_a_picture_set_after_the_first_look_shows_at_once(stack: Stack) -> None:
    user, jid = new_user(), "15551240021@s.whatsapp.net"
    async with stack.client(user) as client:
        sid, _own = await paired(client)
        await say(client, sid, jid)  # listed (and looked up): no picture yet
        missing = await client.get(f"/sessions/{sid}/chats/{jid}/picture")
        await contact(client, sid, jid=jid, picture=True)  # WhatsApp announces the change

        async def url() -> object:
            items = (await client.get(f"/sessions/{sid}/chats")).json()["items"]
            return next(c["pictureUrl"] for c in items if c["id"] == jid)

        listed = await eventually(url, lambda u: u is not None, 15)
        picture = await client.get(str(listed))

        assert missing.status_code == 404 and missing.json()["error"]["code"] == "picture_not_available"
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


def test_whatsapps_link_expiry_is_read_from_its_oe_parameter() -> None:
    url = "https://pps.whatsapp.net/v/t61.24694-24/123_456_n.jpg?ccb=11-4&oh=01_Q5AaI&oe=6753A1F0&_nc_cat=1"

    assert cdn_expiry(url) == datetime(2024, 12, 7, 1, 16, 32, tzinfo=UTC)
    assert cdn_expiry("https://pps.whatsapp.net/v/x.jpg") is None
    assert cdn_expiry("https://pps.whatsapp.net/v/x.jpg?oe=nothex") is None
    alive = PictureState("1", url, datetime(2024, 12, 6, tzinfo=UTC))
    assert not alive.stale(datetime(2024, 12, 6, 12, tzinfo=UTC))
    assert alive.stale(datetime(2024, 12, 7, 1, 14, tzinfo=UTC))  # within the margin of its expiry
