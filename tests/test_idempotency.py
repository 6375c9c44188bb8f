"""Idempotency-Key through the real API on the simulated network: a key binds its user, its session and
its request, whether the requests come one after another or at once (`asyncio.gather`).

One stack for the module; each test uses its own keys, and the user with two sessions is shared.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from kernel.settings import asyncpg_dsn
from tests import media_samples
from tests.apikit import Stack, api_stack, new_user
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

CONTACT = "+14155557301"
# The simulated network's rule: it refuses sends to digits ending in 0463 (the reach-out time lock). The
# refusal comes from the network, after the note's conversion; a number that is not on WhatsApp would
# be refused before it (the session checks numbers first).
RESTRICTED = "+14155550463"


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def _connected(client: httpx.AsyncClient) -> str:
    created = await client.post("/sessions", json={})
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]

    async def status() -> dict[str, Any]:
        response = await client.get(f"/sessions/{sid}/status")
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    await eventually(status, lambda s: s["status"] == "qr_ready", 30)
    phone = f"+1415556{random.randint(1000, 9999)}"
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
    assert scanned.status_code == 200, scanned.text
    await eventually(status, lambda s: s["status"] == "connected", 30)
    return sid


@pytest.fixture(scope="module")
async def user_with_two(stack: Stack) -> tuple[str, str, str]:
    """A user with two connected sessions: (user, first session, second session)."""
    user = new_user()
    async with stack.client(user) as client:
        return user, await _connected(client), await _connected(client)


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4()}"}


async def _send(
    client: httpx.AsyncClient, sid: str, text: str, key: dict[str, str], to: str = CONTACT
) -> httpx.Response:
    return await client.post(f"/sessions/{sid}/send/text", json={"to": to, "text": text}, headers=key)


async def _sent(client: httpx.AsyncClient, sid: str, marker: str) -> list[str]:
    """What the network received from the session, among the texts carrying `marker`."""
    response = await client.get(f"/simulator/sessions/{sid}/sent")
    response.raise_for_status()
    return [m["text"] for m in response.json() if marker in (m.get("text") or "")]


def _code(response: httpx.Response) -> str | None:
    if response.status_code == 200:
        return None
    code: str = response.json()["error"]["code"]
    return code


async def test_a_key_is_bound_to_its_session_and_its_request(
    stack: Stack, user_with_two: tuple[str, str, str]
) -> None:
    user, first, second = user_with_two
    key, marker = _key(), uuid.uuid4().hex
    async with stack.client(user) as client:
        sent = await _send(client, first, f"once {marker}", key)
        assert sent.status_code == 200, sent.text
        again = await _send(client, first, f"once {marker}", key)
        assert again.status_code == 200 and again.json() == sent.json()
        other_body = await _send(client, first, f"other {marker}", key)
        other_session = await _send(client, second, f"once {marker}", key)
        both_other = await _send(client, second, f"other {marker}", key)
        for refused in (other_body, other_session, both_other):
            assert refused.status_code == 422, refused.text
            assert _code(refused) == "idempotency_key_reused"
        assert await _sent(client, first, marker) == [f"once {marker}"]
        assert await _sent(client, second, marker) == []


async def test_one_key_on_two_sessions_at_once_goes_out_once(
    stack: Stack, user_with_two: tuple[str, str, str]
) -> None:
    user, first, second = user_with_two
    marker = uuid.uuid4().hex
    async with stack.client(user) as client:
        for round_ in range(5):
            key, text = _key(), f"race {round_} {marker}"
            answers = await asyncio.gather(_send(client, first, text, key), _send(client, second, text, key))
            assert {_code(a) for a in answers} == {None, "idempotency_key_reused"}, [a.text for a in answers]
            # The winner's retry gets its result; the loser's session still refuses the key.
            won, lost = (0, 1) if answers[0].status_code == 200 else (1, 0)
            retried = await _send(client, (first, second)[won], text, key)
            assert retried.json() == answers[won].json()
            assert _code(await _send(client, (first, second)[lost], text, key)) == "idempotency_key_reused"
        went_out = await _sent(client, first, marker) + await _sent(client, second, marker)
        assert sorted(went_out) == sorted(f"race {i} {marker}" for i in range(5))


async def _key_claimed(database_url: str, key: str) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM send_record WHERE key = $1", key))
    finally:
        await conn.close()


async def test_another_request_during_a_failing_send_is_422_not_that_sends_error(
    stack: Stack, user_with_two: tuple[str, str, str], postgres_server: str
) -> None:
    """The first request (a voice note WhatsApp refuses) fails after a second of conversion; a text
    with the same key sent meanwhile is refused as a reuse, not with the note's error, and sends once
    retried after the note failed."""
    user, first, _ = user_with_two
    key, marker = _key(), uuid.uuid4().hex
    note = media_samples.audio("flac", seconds=30)
    async with stack.client(user) as client:
        audio = asyncio.create_task(
            client.post(
                f"/sessions/{first}/send/audio",
                data={"to": RESTRICTED},
                files={"file": ("note.flac", note, "audio/flac")},
                headers=key,
            )
        )
        claimed = await eventually(
            lambda: _key_claimed(postgres_server, key["Idempotency-Key"]), bool, 30, every=0.01
        )
        assert claimed
        text = await _send(client, first, f"meanwhile {marker}", key)
        assert _code(text) in ("idempotency_key_reused", None), text.text  # None: the note had failed
        assert _code(await audio) == "whatsapp_restricted"
        # The note definitely failed: its key is free, and the text retried with it goes out once.
        retried = await _send(client, first, f"meanwhile {marker}", key)
        assert retried.status_code == 200, retried.text
        assert text.status_code != 200 or retried.json() == text.json()
        assert await _sent(client, first, marker) == [f"meanwhile {marker}"]


async def test_two_users_never_share_a_key(stack: Stack, user_with_two: tuple[str, str, str]) -> None:
    user, first, _ = user_with_two
    other = new_user()
    key, marker = _key(), uuid.uuid4().hex
    text = f"same key, two users {marker}"
    async with stack.client(user) as mine, stack.client(other) as theirs:
        their_session = await _connected(theirs)
        answers = await asyncio.gather(_send(mine, first, text, key), _send(theirs, their_session, text, key))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert answers[0].json()["id"] != answers[1].json()["id"]
        assert (await _send(mine, first, text, key)).json() == answers[0].json()
        assert (await _send(theirs, their_session, text, key)).json() == answers[1].json()
        assert await _sent(mine, first, marker) == [text]
        assert await _sent(theirs, their_session, marker) == [text]


async def test_a_key_older_than_24_hours_is_free_again(
    stack: Stack, user_with_two: tuple[str, str, str], postgres_server: str
) -> None:
    user, first, second = user_with_two
    key, marker = _key(), uuid.uuid4().hex
    conn = await asyncpg.connect(asyncpg_dsn(postgres_server))
    try:  # the second session used the key 25 hours ago
        await conn.execute(
            "INSERT INTO send_record (user_id, key, session_id, fingerprint, message_id, sent_at, created_at)"
            " VALUES ($1, $2, $3::uuid, 'old', 'OLD-ID', now() - interval '25 hours',"
            " now() - interval '25 hours')",
            user,
            key["Idempotency-Key"],
            second,
        )
    finally:
        await conn.close()
    async with stack.client(user) as client:
        sent = await _send(client, first, f"a day later {marker}", key)
        assert sent.status_code == 200, sent.text
        assert sent.json()["id"] != "OLD-ID"
        assert await _sent(client, first, marker) == [f"a day later {marker}"]
        refused = await _send(client, second, f"a day later {marker}", key)
        assert _code(refused) == "idempotency_key_reused"
