"""End to end: a number's outbound pace and WhatsApp's own refusals, as a client of the API sees them.

The stack runs its sessions at 6 sends a minute with a burst of 2: the third quick send is refused with
429 `send_rate_limited` and `Retry-After`, nothing reaches the network, and nothing is queued to go out
later. A retried Idempotency-Key and a send refused before it went out spend nothing. The simulated
network refuses sends to numbers ending in 0429 (too fast) and 0463 (the reach-out time lock) as
whatsmeow reports WhatsApp's refusals: 429 `whatsapp_rate_limited` / 403 `whatsapp_restricted`, and the
session stays connected. And with REJECT_CALLS a call is declined and answered with
REJECT_CALLS_MESSAGE (tests/test_send_kinds.py: without it, the call only shows).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests import media_samples
from tests.apikit import Stack, api_stack, websocket
from tests.inboxkit import error_code, new_contact, pair_session, sent

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    from tests.raykit import local_ray

    pace = {
        "send_per_minute": 6,
        "send_burst": 2,
        "reject_calls": True,
        "reject_calls_message": "No calls, write",
    }
    with local_ray(), api_stack(postgres_server, redis_server, session=pace) as running:
        yield running


async def test_beyond_the_pace_a_send_is_refused_not_queued(stack: Stack) -> None:
    user, sid, _ = await pair_session(stack)
    phone, chat = new_contact()
    async with stack.client(user) as client:
        nobody = await client.post(f"/sessions/{sid}/send/text", json={"to": "+15557770000", "text": "x"})
        first = await client.post(
            f"/sessions/{sid}/send/text", json={"to": phone, "text": "one"}, headers={"Idempotency-Key": "k1"}
        )
        second = await client.post(
            f"/sessions/{sid}/send/location", json={"to": phone, "latitude": 1, "longitude": 2}
        )
        retried = await client.post(
            f"/sessions/{sid}/send/text", json={"to": phone, "text": "one"}, headers={"Idempotency-Key": "k1"}
        )
        third = await client.post(f"/sessions/{sid}/send/text", json={"to": phone, "text": "three"})
        await asyncio.sleep(1.5)  # nothing refused goes out later
        on_network = await sent(client, sid, chat)
        status = (await client.get(f"/sessions/{sid}/status")).json()

    # Refused before it went out (not on WhatsApp): it spent nothing of the burst.
    assert (nobody.status_code, error_code(nobody)) == (422, "not_on_whatsapp")
    assert first.status_code == second.status_code == retried.status_code == 200, second.text
    assert retried.json() == first.json()  # a retried key returns the first send, spending nothing
    assert (third.status_code, error_code(third)) == (429, "send_rate_limited")
    assert 1 <= int(third.headers["Retry-After"]) <= 10  # one send every 10 s at 6 a minute
    assert [s["type"] for s in on_network] == ["text", "location"]
    assert status["status"] == "connected"


async def test_whatsapps_refusals_are_stable_codes_and_the_session_stays(stack: Stack) -> None:
    user, sid, _ = await pair_session(stack)
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        too_fast = await client.post(f"/sessions/{sid}/send/text", json={"to": "+15551110429", "text": "x"})
        locked = await client.post(
            f"/sessions/{sid}/send/poll", json={"to": "+15551110463", "question": "q?", "options": ["a", "b"]}
        )
        restricted = await ws.wait_for(lambda f: f["type"] == "status" and f["reason"] == "restricted")
        status = (await client.get(f"/sessions/{sid}/status")).json()
        everything = (await client.get(f"/simulator/sessions/{sid}/sent")).json()

    assert (too_fast.status_code, error_code(too_fast)) == (429, "whatsapp_rate_limited")
    assert too_fast.headers["Retry-After"] == "60"
    assert (locked.status_code, error_code(locked)) == (403, "whatsapp_restricted")
    # The number itself is restricted: its status says so, and it stays connected.
    assert restricted["status"] == "connected"
    assert (status["status"], status["reason"]) == ("connected", "restricted")
    assert everything == []


async def test_typing_first_shows_composing_then_sends(stack: Stack) -> None:
    user, sid, _ = await pair_session(stack)
    phone, chat = new_contact()
    async with stack.client(user) as client:
        started = time.monotonic()
        typed = await client.post(
            f"/sessions/{sid}/send/text", json={"to": phone, "text": "hi, as a person", "typingMs": 800}
        )
        took = time.monotonic() - started
        too_long = await client.post(
            f"/sessions/{sid}/send/text", json={"to": phone, "text": "x", "typingMs": 10_001}
        )
        on_network = await sent(client, sid, chat)

    assert typed.status_code == 200, typed.text
    assert took >= 0.8
    assert [(s["action"], s["state"] or s["text"]) for s in on_network] == [
        ("presence", "composing"),
        ("message", "hi, as a person"),
    ]
    assert (too_long.status_code, error_code(too_long)) == (422, "invalid_request")


async def test_typing_first_on_files_and_voice_notes_then_sends(stack: Stack) -> None:
    user, sid, _ = await pair_session(stack)
    phone, chat = new_contact()
    png, wav = media_samples.image("png"), media_samples.audio("wav")
    async with stack.client(user) as client:

        async def form(path: str, typing_ms: str, data: bytes, name: str, mimetype: str) -> httpx.Response:
            fields = {"to": phone, "typingMs": typing_ms}
            files = {"file": (name, data, mimetype)}
            return await client.post(f"/sessions/{sid}/send/{path}", data=fields, files=files)

        started = time.monotonic()
        image = await form("media", "800", png, "dot.png", "image/png")
        image_took = time.monotonic() - started
        started = time.monotonic()
        voice = await form("audio", "600", wav, "note.wav", "audio/wav")
        voice_took = time.monotonic() - started
        refused = [
            await form(path, value, data, name, mimetype)
            for value in ("10001", "-1", "1.5", "soon", "9" * 5000)
            for path, data, name, mimetype in (
                ("media", png, "dot.png", "image/png"),
                ("audio", wav, "note.wav", "audio/wav"),
            )
        ]
        on_network = await sent(client, sid, chat)

    assert image.status_code == voice.status_code == 200, (image.text, voice.text)
    assert image_took >= 0.8 and voice_took >= 0.6
    # A file is typed, a voice note recorded, as a person would; then each goes out, once.
    assert [(s["action"], s["state"] or s["type"]) for s in on_network] == [
        ("presence", "composing"),
        ("message", "image"),
        ("presence", "recording"),
        ("message", "audio"),
    ]
    # The JSON bodies' bounds and code: a bad value is refused before anything goes out, never a 500.
    assert {(r.status_code, error_code(r)) for r in refused} == {(422, "invalid_request")}


async def test_a_call_is_declined_answered_and_shown(stack: Stack) -> None:
    user, sid, _ = await pair_session(stack)
    phone, chat = new_contact()
    async with stack.client(user) as client, websocket(stack, user, session_id=sid) as ws:
        rang = await client.post(f"/simulator/sessions/{sid}/call", json={"from": phone})
        assert rang.status_code == 200, rang.text
        call_id = rang.json()["callId"]
        frame = await ws.wait_for(lambda f: f["type"] == "call")
        answer = await ws.wait_for(lambda f: f["type"] == "message" and f["chatId"] == chat)
        on_network = await sent(client, sid, chat)

    assert (frame["chatId"], frame["callId"], frame["rejected"]) == (chat, call_id, True)
    assert answer["message"]["fromMe"] is True and answer["message"]["text"] == "No calls, write"
    assert [(s["action"], s["id"] if s["action"] != "message" else s["text"]) for s in on_network] == [
        ("reject_call", call_id),
        ("message", "No calls, write"),
    ]
