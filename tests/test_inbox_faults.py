"""Reactions, edits, deletions and reads on the phone while PostgreSQL is away (a TCP proxy cuts the bridge's
tables), without Ray: each waits in the journal, reaches the database once it answers, in order, and is
published once; what the user asks of the inbox meanwhile is 503, never half done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from actors.session import SessionCore
from kernel.domain import MessageType, SessionStatus
from kernel.errors import ServiceUnavailable
from kernel.settings import asyncpg_dsn
from tests.faultproxy import FaultProxy
from tests.raykit import eventually, fetchval, frames, insert_session
from tests.sessionkit import Factory, session_factory, session_row, wait_status

pytestmark = pytest.mark.timeout(120)

CONTACT = "+15557004321"
CHAT = "15557004321@s.whatsapp.net"


@pytest.fixture
async def core(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    async with session_factory(database_url, redis_url, tmp_path) as build:
        yield build


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[FaultProxy]:
    parts = urlsplit(database_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


async def _spooled(session: SessionCore) -> int:
    return session.spooled


async def test_phone_side_changes_during_an_outage_land_once_in_order(
    core: Factory, pg_proxy: FaultProxy, database_url: str, redis_url: str
) -> None:
    sid = await insert_session(database_url)
    session, exits = await core(sid, db=pg_proxy.url_for(database_url))
    await wait_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone="+15551238101", display_name="Faults")
    await wait_status(session, SessionStatus.CONNECTED)
    await eventually(lambda: session_row(database_url, sid), lambda r: r["status"] == "connected", 10)
    kept = await session.simulate("incoming", from_=CONTACT, text="keep me")
    gone = await session.simulate("incoming", from_=CONTACT, text="delete me")
    await eventually(lambda: _spooled(session), lambda n: n == 0, 10)

    async with frames(redis_url, sid) as got:
        pg_proxy.cut()
        await session.simulate("react", chat_id=CONTACT, message_id=kept.id, emoji="👍")
        await session.simulate("edit", chat_id=CONTACT, message_id=kept.id, text="kept, edited")
        await session.simulate("revoke", chat_id=CONTACT, message_id=gone.id)
        await session.simulate("read", chat_id=CONTACT)
        await eventually(lambda: _spooled(session), lambda n: n >= 4, 10)
        with pytest.raises(ServiceUnavailable):
            await session.react(CONTACT, kept.id, "🎉")
        with pytest.raises(ServiceUnavailable):
            await session.read_chat(CONTACT)
        assert got.of("message_update") == [] and got.of("chat") == []  # nothing before it is stored

        pg_proxy.restore()
        await eventually(lambda: _spooled(session), lambda n: n == 0, 30)
        await got.wait_for("chat", lambda b: b["chatId"] == CHAT)

    updates = [(b["messageId"], b["change"]) for b in got.of("message_update")]
    assert updates == [(kept.id, "reaction"), (kept.id, "edit"), (gone.id, "revoke")]
    # This chat's read, once (the pairing's history sync may still be naming other chats meanwhile).
    assert [b["unreadCount"] for b in got.of("chat") if b["chatId"] == CHAT] == [0]
    final = got.of("message_update")[1]["message"]
    assert (final["text"], [r["emoji"] for r in final["reactions"]]) == ("kept, edited", ["👍"])
    dsn = asyncpg_dsn(database_url)
    assert await fetchval(dsn, "SELECT type FROM message WHERE id = $1", gone.id) == MessageType.REVOKED
    assert await fetchval(dsn, "SELECT text FROM message WHERE id = $1", gone.id) is None
    assert await fetchval(dsn, "SELECT unread_count FROM chat WHERE session_id = $1::uuid", sid) == 0
    assert exits.reasons == []
