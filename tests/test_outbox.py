"""Frames a session could not publish while Redis was away outlive its process: the next one sends them,
first, once, in order (real Redis stopped, a real recycle with the session's files on disk)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from redis.asyncio import Redis

from actors.bus import OUTBOX, EventBus, _Event
from actors.spool import Spool, pending_bytes
from api import eventlog
from api.local_valkey import embedded_valkey
from kernel.domain import SessionStatus
from kernel.settings import asyncpg_dsn
from kernel.wire import EVENTS_STREAM, event_fields
from tests.raykit import eventually, insert_session
from tests.sessionkit import Factory, session_factory, wait_status

CONTACT = "+15557009001"


@pytest.fixture
async def core(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    async with session_factory(database_url, redis_url, tmp_path / "spools") as build:
        yield build


async def _logged(redis_url: str, sid: str) -> list[tuple[str, dict[str, Any]]]:
    """The session's entries in the event log (what every WebSocket reader replays), in order."""
    async with Redis.from_url(redis_url) as client:
        entries = await client.xrange(EVENTS_STREAM)
    out = []
    for _, fields in entries:
        if fields[b"s"].decode() == sid:
            out.append((fields[b"k"].decode(), json.loads(fields[b"d"])))
    return out


def _texts(logged: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [body["message"]["text"] for kind, body in logged if kind == "msg"]


async def _stored(database_url: str, sid: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM message WHERE session_id = $1::uuid AND chat_id = $2",
            sid,
            f"{CONTACT.lstrip('+')}@s.whatsapp.net",
        )
        return count
    finally:
        await conn.close()


async def test_frames_queued_while_redis_is_down_survive_a_recycle(
    core: Factory, database_url: str, tmp_path: Path
) -> None:
    sid = await insert_session(database_url)
    with embedded_valkey(tmp_path / "valkey-before") as redis_url:
        session, exits = await core(sid, redis=redis_url)
        await wait_status(session, SessionStatus.QR_READY)
        await session.simulate("scan", phone="+15551239001", display_name="Outbox")
        await wait_status(session, SessionStatus.CONNECTED)
    # Redis is stopped for real: every frame from here on waits in the outbox.
    before = [f"before the recycle {i}" for i in range(3)]
    for text in before:
        await session.simulate("incoming", from_=CONTACT, text=text)
    await eventually(lambda: _stored(database_url, sid), lambda n: n == len(before), 15)
    await eventually(lambda: asyncio.sleep(0, session.spooled), lambda n: n == 0, 15)  # frames queued
    await session.recycle("recycled while Redis is away")
    assert exits.reasons == ["recycled while Redis is away"]
    outbox = tmp_path / "spools" / f"{sid}.outbox"
    assert pending_bytes(outbox) > 0  # left on disk for the next process

    again, _ = await core(sid, redis=redis_url)  # the next process on the same node, Redis still away
    await wait_status(again, SessionStatus.CONNECTED)
    await again.simulate("incoming", from_=CONTACT, text="after the recycle")

    port = urlsplit(redis_url).port
    with embedded_valkey(tmp_path / "valkey-after", port=port):  # back, empty, on the same address
        logged = await eventually(
            lambda: _logged(redis_url, sid), lambda got: "after the recycle" in _texts(got), 20
        )
        await asyncio.sleep(2.0)  # a second flush would have happened by now
        logged = await _logged(redis_url, sid)
    assert _texts(logged) == [*before, "after the recycle"]  # each once, the earlier process's first
    statuses = [body["status"] for kind, body in logged if kind == "status"]
    assert statuses[-1] == "connected"
    assert pending_bytes(outbox) == 0


async def test_what_a_dying_process_had_sent_goes_out_again_but_reaches_readers_once(
    redis_url: str, tmp_path: Path
) -> None:
    sid = str(uuid.uuid4())
    path = tmp_path / "spools" / f"{sid}.outbox"

    def outbox() -> Spool:
        return Spool(path, codec=OUTBOX, max_bytes=1 << 20)

    bodies = [json.dumps({"chatId": "c", "message": {"text": t}}) for t in ("one", "two")]
    left = outbox()  # what the earlier process (producer "dead01") kept while Redis was away
    for seq, body in enumerate(bodies, 1):
        left.append(_Event("msg", body, "dead01", seq))
    left.close()
    async with Redis.from_url(redis_url) as client:  # it had sent the first when it died
        fields = event_fields(sid, "msg", bodies[0], "dead01", 1)
        await client.xadd(EVENTS_STREAM, dict(zip(fields[0::2], fields[1::2], strict=True)))

    bus = EventBus(redis_url, sid, retry_s=0.1, open_outbox=outbox)
    bus.restore()
    await bus.publish("msg", {"chatId": "c", "message": {"text": "three"}})
    await eventually(lambda: asyncio.sleep(0, bus.waiting), lambda n: n == 0, 10)
    await bus.close()

    async with Redis.from_url(redis_url) as client:
        raw = [eventlog.decode(i, f) for i, f in await client.xrange(EVENTS_STREAM)]
    mine = [e for e in raw if e.session_id == sid]
    assert [e.payload["message"]["text"] for e in mine] == ["one", "one", "two", "three"]  # the copy
    readers = eventlog.Duplicates()  # what the API's hub and every replay apply
    assert [e.payload["message"]["text"] for e in mine if not readers.is_copy(e)] == ["one", "two", "three"]
    assert pending_bytes(path) == 0
