"""Media downloads through the real API: streamed from the session in bounded chunks, refused above the limit
before anything is downloaded. Local Ray, the registry, uvicorn; the simulated network makes the bytes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from actors.calls import NetworkControls
from actors.clients.simulated.content import incoming_media, media_chunks
from tests.apikit import Stack, api_stack, new_user
from tests.raykit import (
    control,
    eventually,
    handle,
    local_ray,
    pid_of,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

MB = 1024 * 1024
LIMIT = 128 * MB
BIG = 100 * MB
RSS_GROWTH_BOUND_MB = 40.0


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    """The API stack with sessions whose media limit is LIMIT (so a 100 MB document may be downloaded)."""
    with local_ray(), api_stack(postgres_server, redis_server, session={"max_media_bytes": LIMIT}) as running:
        yield running


@dataclass
class Paired:
    user: str
    sid: str
    namespace: str

    async def incoming(self, media: dict[str, Any]) -> dict[str, Any]:
        """A message with `media` arrives (through the actor: the /simulator route caps sizes at 16 MB)."""
        args = {"from_": "+15553334444", "text": None, "push_name": "Ann", "media": media}
        message = await control(handle(self.sid, self.namespace), NetworkControls.incoming)(**args)
        return {"id": message.id, "chatId": message.chat_id}


async def paired_session(stack: Stack) -> Paired:
    user = new_user()
    async with stack.client(user) as client:
        created = await client.post("/sessions", json={})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]

        async def status() -> str:
            return str((await client.get(f"/sessions/{sid}/status")).json()["status"])

        await eventually(status, lambda s: s == "qr_ready", 30)
        phone = f"+1415556{secrets.randbelow(9000) + 1000}"
        scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
        assert scanned.status_code == 200, scanned.text
        await eventually(status, lambda s: s == "connected", 30)
    return Paired(user, sid, stack.namespace)


def media_url(sid: str, message: dict[str, Any]) -> str:
    return f"/sessions/{sid}/chats/{message['chatId']}/messages/{message['id']}/media"


def reset_peak(pid: int) -> None:
    """Start VmHWM (peak RSS) afresh from the current RSS (Linux: clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def memory_mb(pid: int) -> dict[str, float]:
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


async def test_a_100_mb_document_streams_whole_while_memory_stays_flat(stack: Stack) -> None:
    session = await paired_session(stack)
    spec = {"type": "document", "mimetype": "application/zip", "fileName": "big.zip", "size": BIG}
    message = await session.incoming(spec)
    _, _, ref = incoming_media(message["id"], spec)  # the simulated network's bytes are a function of it
    expected = hashlib.sha256()
    for chunk in media_chunks(ref):
        expected.update(chunk)

    session_pid, api_pid = await pid_of(session.sid, session.namespace), os.getpid()
    async with stack.client(session.user) as client:
        url = media_url(session.sid, message)
        listed = f"/sessions/{session.sid}/chats/{message['chatId']}/messages"
        await eventually(lambda: client.get(listed), lambda r: message["id"] in r.text, 10)  # stored
        before = {pid: memory_mb(pid)["VmRSS"] for pid in (session_pid, api_pid)}
        for pid in before:
            reset_peak(pid)
        got, size, started = hashlib.sha256(), 0, time.monotonic()
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            headers = response.headers
            async for chunk in response.aiter_raw():
                got.update(chunk)
                size += len(chunk)
        took = time.monotonic() - started
        peaks = {pid: memory_mb(pid)["VmHWM"] for pid in before}

    assert size == BIG and got.hexdigest() == expected.hexdigest()
    assert headers["content-type"] == "application/zip"
    assert headers["content-length"] == str(BIG)
    assert headers["content-disposition"] == "attachment"
    assert headers["x-content-type-options"] == "nosniff"
    growth = {pid: peaks[pid] - before[pid] for pid in before}
    print(
        f"\n100 MB streamed in {took:.1f} s; peak RSS growth: session {growth[session_pid]:.1f} MB"
        f" (from {before[session_pid]:.0f} MB), API+test process {growth[api_pid]:.1f} MB"
        f" (from {before[api_pid]:.0f} MB)"
    )
    assert growth[session_pid] < RSS_GROWTH_BOUND_MB
    assert growth[api_pid] < RSS_GROWTH_BOUND_MB


async def test_above_the_limit_is_413_before_any_download(stack: Stack) -> None:
    session = await paired_session(stack)
    huge = await session.incoming({"type": "document", "mimetype": "application/pdf", "size": 2 * LIMIT})
    small = await session.incoming({"type": "image", "mimetype": "image/jpeg", "size": 30_000})
    async with stack.client(session.user) as client:
        refused = await eventually(
            lambda: client.get(media_url(session.sid, huge)), lambda r: r.status_code != 404, 10
        )
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["code"] == "media_too_large"
        fine = await client.get(media_url(session.sid, small))
        assert fine.status_code == 200 and len(fine.content) == 30_000

        # Offline, a download would be 409: the limit is checked first, from the stored size alone.
        await control(handle(session.sid, session.namespace), NetworkControls.drop)(hang_reconnect=True)
        offline = await eventually(
            lambda: client.get(media_url(session.sid, small)), lambda r: r.status_code == 409, 10
        )
        assert offline.json()["error"]["code"] == "session_not_connected"
        still = await client.get(media_url(session.sid, huge))
        assert still.status_code == 413 and still.json()["error"]["code"] == "media_too_large"


async def test_missing_message_and_media_are_404(stack: Stack) -> None:
    session = await paired_session(stack)
    text = await control(handle(session.sid, session.namespace), NetworkControls.incoming)(
        from_="+15553334444", text="just text", push_name=None, media=None
    )
    async with stack.client(session.user) as client:
        missing = await client.get(f"/sessions/{session.sid}/chats/{text.chat_id}/messages/nope/media")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "message_not_found"
        plain = await eventually(
            lambda: client.get(media_url(session.sid, {"id": text.id, "chatId": text.chat_id})),
            lambda r: r.status_code == 404 and r.json()["error"]["code"] == "media_not_available",
            10,
        )
        assert plain.status_code == 404
