"""The session state machine under a real PostgreSQL outage (a TCP proxy that cuts the bridge's tables),
without Ray: nothing WhatsApp delivered is lost, nothing is stored twice, no transition is stranded, and a
session that boots while the database is away recovers by itself. The simulated network keeps its own
store on the test database directly, as WhatsApp's servers would stay up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from actors.session import SessionCore
from actors.spool import Spool, pending_bytes
from actors.writes import WRITES, SaveState, StoreMessage
from kernel.domain import SessionStatus
from kernel.errors import IdempotencyKeyReused, SendOutcomeUnknown
from kernel.settings import asyncpg_dsn
from tests.faultproxy import FaultProxy
from tests.raykit import eventually, frames, insert_session
from tests.sessionkit import Exits, Factory, session_factory, session_row, wait_status

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def core(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    async with session_factory(database_url, redis_url, tmp_path) as build:
        yield build


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[FaultProxy]:
    parts = urlsplit(database_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


async def _messages(database_url: str, sid: str, chat: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(
            await conn.fetch(
                "SELECT id, text FROM message WHERE session_id = $1::uuid AND chat_id = $2 ORDER BY ts, id",
                sid,
                f"{chat}@s.whatsapp.net",
            )
        )
    finally:
        await conn.close()


async def _connected(
    core: Factory, pg_proxy: FaultProxy, database_url: str, phone: str
) -> tuple[str, SessionCore, Exits]:
    sid = await insert_session(database_url)
    session, exits = await core(sid, db=pg_proxy.url_for(database_url))
    await wait_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone=phone, display_name="Faults")
    await wait_status(session, SessionStatus.CONNECTED)
    await eventually(lambda: session_row(database_url, sid), lambda r: r["status"] == "connected", 10)
    await eventually(lambda: _spooled(session), lambda n: n == 0, 10)
    return sid, session, exits


async def test_messages_during_a_database_outage_are_stored_once_in_order_and_published_after(
    core: Factory, pg_proxy: FaultProxy, database_url: str, redis_url: str
) -> None:
    sid, session, exits = await _connected(core, pg_proxy, database_url, "+15551238001")
    async with frames(redis_url, sid) as got:
        pg_proxy.cut()
        texts = [f"during the outage {i:02d}" for i in range(20)]
        for text in texts:
            await session.simulate("incoming", from_="+15557001234", text=text, push_name="Ann")
        await eventually(lambda: _spooled(session), lambda n: n >= 20, 10)
        assert (await session.view()).status == SessionStatus.CONNECTED  # the outage changes nothing here
        assert got.of("msg") == []  # nothing is published before it is stored
        pg_proxy.restore()
        await eventually(lambda: _spooled(session), lambda n: n == 0, 30)
        await got.wait_for("msg", lambda b: b["message"]["text"] == texts[-1], timeout=10)
    stored = await _messages(database_url, sid, "15557001234")
    # Stored once each (the store orders by WhatsApp's millisecond timestamps, ties by id) ...
    assert sorted(r["text"] for r in stored) == texts
    # ... and published once each, in the order they arrived.
    assert [b["message"]["text"] for b in got.of("msg")] == texts
    assert exits.reasons == []


async def _spooled(session: SessionCore) -> int:
    return session.spooled


async def test_a_session_that_boots_while_the_database_is_away_recovers_by_itself(
    core: Factory, pg_proxy: FaultProxy, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors.session_boot")

    async def failed_boots() -> int:
        return sum("cannot load its row" in record.getMessage() for record in caplog.records)

    sid = await insert_session(database_url)
    pg_proxy.cut()
    session, exits = await core(sid, db=pg_proxy.url_for(database_url))
    await eventually(failed_boots, lambda n: n == 1, 20)  # logged once, however often it is retried
    assert not session.ready and session.current() is None
    pg_proxy.restore()
    await eventually(lambda: _ready(session), bool, 15)
    await wait_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone="+15551238002", display_name=None)
    await wait_status(session, SessionStatus.CONNECTED)
    assert exits.reasons == []


async def _ready(session: SessionCore) -> bool:
    return session.ready


async def test_connecting_during_an_outage_is_not_stranded_and_reaches_the_database_after(
    core: Factory, pg_proxy: FaultProxy, database_url: str
) -> None:
    sid = await insert_session(database_url)
    session, exits = await core(sid, db=pg_proxy.url_for(database_url))
    await wait_status(session, SessionStatus.QR_READY)
    pg_proxy.cut()
    jid = await session.simulate("scan", phone="+15551238003", display_name="Cut")
    view = await wait_status(session, SessionStatus.CONNECTED)
    sent = await session.send_text("+15557001235", "sent while the database is away")
    assert view.phone == "+15551238003" and sent.id
    pg_proxy.restore()
    row = await eventually(lambda: session_row(database_url, sid), lambda r: r["status"] == "connected", 30)
    assert (row["device_jid"], row["phone"], row["qr_rounds"]) == (jid, "+15551238003", 0)
    await eventually(lambda: _spooled(session), lambda n: n == 0, 30)
    stored = await _messages(database_url, sid, "15557001235")
    assert [r["text"] for r in stored] == ["sent while the database is away"]
    assert exits.reasons == []


async def test_a_drop_during_an_outage_reconnects_and_the_state_lands_in_order(
    core: Factory, pg_proxy: FaultProxy, database_url: str
) -> None:
    sid, session, exits = await _connected(core, pg_proxy, database_url, "+15551238004")
    pg_proxy.cut()
    await session.simulate("drop")
    await wait_status(session, SessionStatus.CONNECTING, timeout=5)
    await wait_status(session, SessionStatus.CONNECTED, timeout=15)
    pg_proxy.restore()
    row = await eventually(lambda: session_row(database_url, sid), lambda r: r["status"] == "connected", 30)
    assert row["reason"] is None and exits.reasons == []


async def test_an_idempotency_key_sends_once_even_across_an_outage(
    core: Factory, pg_proxy: FaultProxy, database_url: str
) -> None:
    _, session, _ = await _connected(core, pg_proxy, database_url, "+15551238005")
    pg_proxy.cut()
    first = await session.send_text("+15557001236", "only once", idempotency_key="k-1")
    again = await session.send_text("+15557001236", "only once", idempotency_key="k-1")
    both = await asyncio.gather(
        session.send_text("+15557001236", "twice at once", idempotency_key="k-2"),
        session.send_text("+15557001236", "twice at once", idempotency_key="k-2"),
    )
    with pytest.raises(IdempotencyKeyReused):
        await session.send_text("+15557001236", "something else", idempotency_key="k-1")
    pg_proxy.restore()
    assert again == first and both[0] == both[1]
    sent = await session.simulate("sent")
    assert [m.text for m in sent] == ["only once", "twice at once"]
    await eventually(lambda: _spooled(session), lambda n: n == 0, 30)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        keys = await conn.fetch("SELECT key, message_id FROM send_record ORDER BY key")
    finally:
        await conn.close()
    assert [(k["key"], k["message_id"]) for k in keys] == [("k-1", first.id), ("k-2", both[0].id)]


async def test_a_key_whose_send_never_finished_is_unknown_not_sent_again(
    core: Factory, database_url: str, tmp_path: Path
) -> None:
    """A process that died during a keyed send left the key started: its retry is 504, never a resend."""
    sid = await insert_session(database_url)
    session, _ = await core(sid)
    await wait_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone="+15551238006", display_name=None)
    await wait_status(session, SessionStatus.CONNECTED)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO send_record (user_id, key, session_id, fingerprint) VALUES ('user-1', 'k', $1, 'x')",
            sid,
        )
    finally:
        await conn.close()
    await session.close(purge=False)
    session2, _ = await core(sid)  # a new process of the same session loads the user's keys
    await wait_status(session2, SessionStatus.CONNECTED)
    with pytest.raises((SendOutcomeUnknown, IdempotencyKeyReused)):
        await session2.send_text("+15557001237", "hello", idempotency_key="k")
    assert await session2.simulate("sent") == []


def test_the_spool_survives_a_torn_write_and_keeps_its_order(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    spool = Spool(path, codec=WRITES, max_bytes=1 << 20)
    for i in range(5):
        spool.append(SaveState(SessionStatus.CONNECTED if i % 2 else SessionStatus.CONNECTING, None))
    spool.close()
    with open(path, "ab") as f:
        f.write(b"\x40\x00\x00\x00partial")  # a record whose writer died half-way
    again = Spool(path, codec=WRITES, max_bytes=1 << 20)
    entries = again.head(100)
    assert again.pending == 5 and len(entries) == 5
    again.commit(entries[2][0])
    assert again.pending == 2 and [e for _, e in again.head(100)] == [e for _, e in entries[3:]]
    again.commit(entries[-1][0])
    assert again.pending == 0 and pending_bytes(path) == 0


def test_a_full_spool_refuses_instead_of_growing(tmp_path: Path) -> None:
    from actors.spool import SpoolFull
    from kernel.domain import Message

    spool = Spool(tmp_path / "s.spool", codec=WRITES, max_bytes=4096)
    big = StoreMessage(
        Message(id="m", chat_id="c", sender="s", from_me=False, timestamp=None, text="x" * 3000), None, True
    )  # type: ignore[arg-type]
    spool.append(big)
    with pytest.raises(SpoolFull):
        spool.append(big)
    assert spool.pending == 1


async def test_a_process_that_dies_during_an_outage_leaves_its_events_to_the_next_one(
    core: Factory, pg_proxy: FaultProxy, database_url: str
) -> None:
    sid, session, exits = await _connected(core, pg_proxy, database_url, "+15551238007")
    pg_proxy.cut()
    texts = [f"before the crash {i}" for i in range(5)]
    for text in texts:
        await session.simulate("incoming", from_="+15557001238", text=text)
    await eventually(lambda: _spooled(session), lambda n: n >= 5, 10)
    await session.recycle("killed during the outage")  # nothing reaches PostgreSQL: it is cut
    assert exits.reasons == ["killed during the outage"]
    assert await _messages(database_url, sid, "15557001238") == []
    pg_proxy.restore()
    again, _ = await core(sid, db=pg_proxy.url_for(database_url))  # the next process, same node
    await wait_status(again, SessionStatus.CONNECTED, timeout=15)
    stored = await _messages(database_url, sid, "15557001238")
    assert sorted(r["text"] for r in stored) == texts
