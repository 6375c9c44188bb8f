"""End to end over HTTP and a real WebSocket: sending a location, a contact card and a poll. Each is our
own message with its typed content (stored, pushed as a `message` frame), and the simulated network
received it with its type; bad bodies and numbers that are not on WhatsApp are refused before anything
is sent. And which numbers are on WhatsApp (`contacts/check`).

One stack per module (local Ray, registry, uvicorn); each test works in its own chat of one paired session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apikit import Stack, api_stack, websocket
from tests.inboxkit import error_code, new_contact, pair_session, sent, stored, update

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    from tests.raykit import local_ray

    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


@pytest.fixture(scope="module")
async def paired(stack: Stack) -> tuple[str, str, str]:
    """(user, a connected session, one still showing its QR)."""
    return await pair_session(stack)


async def _send(client: httpx.AsyncClient, sid: str, kind: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/sessions/{sid}/send/{kind}", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert set(result) == {"id", "timestamp"}
    return result


async def test_a_location_a_contact_and_a_poll_are_sent_stored_and_pushed(
    stack: Stack, paired: tuple[str, str, str]
) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        place = await _send(
            client, sid, "location", to=phone, latitude=52.3731, longitude=4.8922, name="Dam Square"
        )
        card = await _send(client, sid, "contact", to=phone, name="Ann Lee", phone="+1 (555) 000-1234")
        poll = await _send(
            client,
            sid,
            "poll",
            to=phone,
            question="Lunch?",
            options=["Pizza", "Sushi", "Salad"],
            multipleAnswers=True,
        )

        frames = [
            await ws.wait_for(lambda f, i=i: f["type"] == "message" and f["message"]["id"] == i["id"])
            for i in (place, card, poll)
        ]
        on_network = await sent(client, sid, chat)
        kept = [await stored(client, sid, chat, i["id"]) for i in (place, card, poll)]

    for frame in frames:
        assert frame["chatId"] == chat and frame["message"]["fromMe"] is True
    located, carded, polled = (f["message"] for f in frames)
    assert located["type"] == "location" and located["summary"] == "📍 Dam Square"
    assert (located["location"]["latitude"], located["location"]["longitude"]) == (52.3731, 4.8922)
    assert carded["type"] == "contact" and carded["summary"] == "👤 Ann Lee"
    assert carded["contacts"][0]["displayName"] == "Ann Lee"
    assert "waid=15550001234:+15550001234" in carded["contacts"][0]["vcard"]
    assert polled["type"] == "poll" and polled["summary"] == "📊 Lunch?"
    assert polled["poll"] == {
        "question": "Lunch?",
        "options": ["Pizza", "Sushi", "Salad"],
        "selectable": 0,
        "tally": [{"option": o, "votes": 0} for o in ("Pizza", "Sushi", "Salad")],
        "votes": [],
    }
    # The store keeps the same typed content as the frames showed.
    for frame, message in zip(frames, kept, strict=True):
        for field in ("type", "location", "contacts", "poll", "summary", "fromMe"):
            assert message[field] == frame["message"][field], field
    # The network got each, with its type and content.
    got = {s["id"]: s for s in on_network}
    assert [got[i["id"]]["type"] for i in (place, card, poll)] == ["location", "contact", "poll"]
    assert got[place["id"]]["location"]["name"] == "Dam Square"
    assert got[card["id"]]["contacts"][0]["displayName"] == "Ann Lee"
    assert got[poll["id"]]["poll"]["options"] == ["Pizza", "Sushi", "Salad"]


async def test_a_single_answer_poll_and_a_retried_send_is_sent_once(
    stack: Stack, paired: tuple[str, str, str]
) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    body = {"to": phone, "question": "Yes or no?", "options": ["Yes", "No"]}
    async with stack.client(user) as client:
        first = await client.post(f"/sessions/{sid}/send/poll", json=body, headers={"Idempotency-Key": "p-1"})
        again = await client.post(f"/sessions/{sid}/send/poll", json=body, headers={"Idempotency-Key": "p-1"})
        on_network = await sent(client, sid, chat)

    assert first.status_code == again.status_code == 200, again.text
    assert first.json() == again.json()
    assert [(s["type"], s["poll"]["selectable"]) for s in on_network] == [("poll", 1)]


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        ("poll", {"question": "One?", "options": ["Only"]}, "invalid_request"),
        ("poll", {"question": "Many?", "options": [f"o{n}" for n in range(13)]}, "invalid_request"),
        ("poll", {"question": "Same?", "options": ["A", "A"]}, "invalid_request"),
        ("poll", {"question": " ", "options": ["A", "B"]}, "invalid_request"),
        ("location", {"latitude": 91, "longitude": 0}, "invalid_request"),
        ("location", {"latitude": 0, "longitude": -181}, "invalid_request"),
        ("contact", {"name": "Ann", "phone": "call me"}, "invalid_phone"),
        ("contact", {"name": "", "phone": "+15550001234"}, "invalid_request"),
    ],
)
async def test_bad_bodies_are_refused_and_nothing_is_sent(
    stack: Stack, paired: tuple[str, str, str], kind: str, body: dict[str, Any], code: str
) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client:
        response = await client.post(f"/sessions/{sid}/send/{kind}", json={"to": phone, **body})
        assert (response.status_code, error_code(response)) == (422, code), response.text
        assert await sent(client, sid, chat) == []


async def test_not_on_whatsapp_and_not_connected_are_refused(
    stack: Stack, paired: tuple[str, str, str]
) -> None:
    user, sid, waiting = paired
    location = {"latitude": 1.0, "longitude": 2.0}
    async with stack.client(user) as client:
        nobody = await client.post(f"/sessions/{sid}/send/location", json={"to": "+15557770000", **location})
        offline = await client.post(
            f"/sessions/{waiting}/send/location", json={"to": "+15557771234", **location}
        )
        stranger = await client.post(
            f"/sessions/{sid}/send/location", json={"to": "not-a-number", **location}
        )
        on_network = await sent(client, sid, "15557770000@s.whatsapp.net")

    assert (nobody.status_code, error_code(nobody)) == (422, "not_on_whatsapp")
    assert (offline.status_code, error_code(offline)) == (409, "session_not_connected")
    assert (stranger.status_code, error_code(stranger)) == (422, "invalid_recipient")
    assert on_network == []


async def test_which_numbers_are_on_whatsapp(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, waiting = paired
    async with stack.client(user) as client:
        checked = await client.post(
            f"/sessions/{sid}/contacts/check", json={"phones": ["+1 (555) 123-0001", "15557770000"]}
        )
        too_many = await client.post(
            f"/sessions/{sid}/contacts/check", json={"phones": [f"+1555123{n:04d}" for n in range(51)]}
        )
        none = await client.post(f"/sessions/{sid}/contacts/check", json={"phones": []})
        bad = await client.post(f"/sessions/{sid}/contacts/check", json={"phones": ["+15551230001", "x"]})
        offline = await client.post(f"/sessions/{waiting}/contacts/check", json={"phones": ["+15551230001"]})

    assert checked.status_code == 200, checked.text
    assert checked.json() == {
        "items": [
            {"phone": "+15551230001", "onWhatsApp": True, "jid": "15551230001@s.whatsapp.net"},
            {"phone": "+15557770000", "onWhatsApp": False, "jid": None},
        ]
    }
    assert (too_many.status_code, error_code(too_many)) == (422, "invalid_request")
    assert (none.status_code, error_code(none)) == (422, "invalid_request")
    assert (bad.status_code, error_code(bad)) == (422, "invalid_phone")
    assert (offline.status_code, error_code(offline)) == (409, "session_not_connected")


async def test_who_a_contact_is_and_blocking_them(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, waiting = paired
    phone, chat = new_contact()
    async with stack.client(user) as client:
        told = await client.post(
            f"/simulator/sessions/{sid}/contacts", json={"jid": phone, "name": "Bea Lo", "pushName": "Bea"}
        )
        assert told.status_code == 204, told.text
        before = await client.get(f"/sessions/{sid}/contacts/{phone}")
        blocked = await client.put(f"/sessions/{sid}/contacts/{chat}/block")
        while_blocked = await client.get(f"/sessions/{sid}/contacts/{chat}")
        unblocked = await client.delete(f"/sessions/{sid}/contacts/{phone}/block")
        after = await client.get(f"/sessions/{sid}/contacts/{phone}")
        nobody = await client.get(f"/sessions/{sid}/contacts/+15557770000")
        nonsense = await client.get(f"/sessions/{sid}/contacts/not-a-number")
        offline = await client.put(f"/sessions/{waiting}/contacts/{phone}/block")
        on_network = await sent(client, sid, chat)

    assert before.status_code == 200, before.text
    assert before.json() == {
        "id": chat,
        "phone": phone,
        "name": "Bea Lo",
        "pushName": "Bea",
        "about": "Hey there! I am using WhatsApp.",
        "pictureUrl": None,
        "blocked": False,
    }
    assert blocked.status_code == unblocked.status_code == 204
    assert while_blocked.json()["blocked"] is True and after.json()["blocked"] is False
    assert [s["action"] for s in on_network] == ["block", "unblock"]
    assert (nobody.status_code, error_code(nobody)) == (422, "not_on_whatsapp")
    assert (nonsense.status_code, error_code(nonsense)) == (422, "invalid_recipient")
    assert (offline.status_code, error_code(offline)) == (409, "session_not_connected")


async def test_a_call_shows_as_a_call_frame_and_rings_on(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        rang = await client.post(f"/simulator/sessions/{sid}/call", json={"from": phone})
        frame = await ws.wait_for(lambda f: f["type"] == "call" and f["chatId"] == chat)
        await asyncio.sleep(0.5)
        on_network = await sent(client, sid, chat)

    assert rang.status_code == 200, rang.text
    assert (frame["callId"], frame["rejected"]) == (rang.json()["callId"], False)
    assert frame["timestamp"] and frame["cursor"]
    assert on_network == []  # REJECT_CALLS is off by default: the call is left to ring


async def test_votes_that_arrive_update_the_polls_tally(stack: Stack, paired: tuple[str, str, str]) -> None:
    user, sid, _ = paired
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        poll = await _send(client, sid, "poll", to=phone, question="Where?", options=["Here", "There"])
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == poll["id"])
        vote = {"chatId": phone, "messageId": poll["id"]}
        first = await client.post(f"/simulator/sessions/{sid}/vote", json={**vote, "options": ["There"]})
        assert first.status_code == 204, first.text
        voted = await update(ws, poll["id"], "vote")
        seen = len(ws.items)
        await client.post(f"/simulator/sessions/{sid}/vote", json={**vote, "options": ["Here"]})
        changed = await update(ws, poll["id"], "vote", after=seen)
        kept = await stored(client, sid, chat, poll["id"])
        unknown = await client.post(
            f"/simulator/sessions/{sid}/vote",
            json={"chatId": phone, "messageId": "3EB0NOPOLL", "options": []},
        )

    assert voted["message"]["poll"]["tally"] == [
        {"option": "Here", "votes": 0},
        {"option": "There", "votes": 1},
    ]
    # One vote per voter: the new choice replaces the old one.
    assert changed["message"]["poll"]["tally"] == [
        {"option": "Here", "votes": 1},
        {"option": "There", "votes": 0},
    ]
    assert [(v["voter"], v["options"]) for v in kept["poll"]["votes"]] == [(chat, ["Here"])]
    assert kept["poll"]["tally"] == changed["message"]["poll"]["tally"]
    assert unknown.status_code == 204  # a vote in no poll we hold changes nothing


async def test_group_routes_are_off_with_inbox_chats_direct(
    stack: Stack, paired: tuple[str, str, str]
) -> None:
    user, sid, _waiting = paired
    group = "120363012345678901@g.us"
    async with stack.client(user) as client:
        answers = [
            await client.get(f"/sessions/{sid}/groups"),
            await client.post(
                f"/sessions/{sid}/groups", json={"subject": "Ours", "participants": ["+15551112222"]}
            ),
            await client.get(f"/sessions/{sid}/groups/{group}"),
            await client.get(f"/sessions/{sid}/groups/{group}/invite-link"),
        ]
        sent = (await client.get(f"/simulator/sessions/{sid}/sent")).json()

    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [(404, "groups_disabled")] * 4
    assert "INBOX_CHATS=all" in answers[0].json()["error"]["message"]
    assert not any(item["to"].endswith("@g.us") for item in sent)
