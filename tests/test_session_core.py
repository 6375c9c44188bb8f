"""The session state machine without Ray: the simulated client, real PostgreSQL and Redis, and a recorded
process exit in place of `os._exit` (what Ray would restart)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from actors.session import SessionCore
from kernel.domain import Reason, SessionStatus
from kernel.errors import InvalidInput, InvalidRecipient, SessionNotConnected
from kernel.events import Disconnected
from kernel.settings import asyncpg_dsn
from tests.raykit import eventually, frames, insert_session
from tests.sessionkit import Exits, Factory, session_factory, session_row, wait_status

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def core(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    async with session_factory(database_url, redis_url, tmp_path) as build:
        yield build


async def test_an_unscanned_round_recycles_the_process_and_counts_it(
    core: Factory, database_url: str
) -> None:
    session, exits = await core()
    await wait_status(session, SessionStatus.QR_READY)
    await asyncio.wait_for(exits.happened.wait(), 10)
    assert exits.reasons == ["pairing round 1 ended unscanned"]
    assert (await session_row(database_url, session.session_id))["qr_rounds"] == 1


async def test_the_last_round_ends_in_qr_timeout_without_recycling(core: Factory, database_url: str) -> None:
    sid = await insert_session(database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    await conn.execute("UPDATE whatsapp_session SET qr_rounds = 1 WHERE id = $1::uuid", sid)
    await conn.close()
    session, exits = await core(sid, qr_max_rounds=2)
    view = await wait_status(session, SessionStatus.DISCONNECTED, timeout=15)
    assert view.reason == Reason.QR_TIMEOUT
    assert exits.reasons == []
    # The journal writes the row after the state changed in memory (persisting never blocks a transition).
    row = await eventually(lambda: session_row(database_url, sid), lambda r: r["status"] == "disconnected", 5)
    assert (row["status"], row["reason"], row["qr_rounds"]) == ("disconnected", "qr_timeout", 2)


async def test_a_session_out_of_rounds_waits_for_the_user(core: Factory, database_url: str) -> None:
    sid = await insert_session(database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    await conn.execute("UPDATE whatsapp_session SET qr_rounds = 2 WHERE id = $1::uuid", sid)
    await conn.close()
    session, _ = await core(sid, qr_max_rounds=2)
    view = await wait_status(session, SessionStatus.DISCONNECTED)
    assert view.reason == Reason.QR_TIMEOUT and view.qr is None


async def test_pairing_persists_the_device_and_resets_counters(core: Factory, database_url: str) -> None:
    sid = await insert_session(database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    await conn.execute("UPDATE whatsapp_session SET qr_rounds = 1 WHERE id = $1::uuid", sid)
    await conn.close()
    session, exits = await core(sid)
    await wait_status(session, SessionStatus.QR_READY)
    jid = await session.simulate("scan", phone="+15551239001", display_name="Core")
    view = await wait_status(session, SessionStatus.CONNECTED)
    assert (view.phone, view.display_name, view.last_seen is not None) == ("+15551239001", "Core", True)
    row = await eventually(lambda: session_row(database_url, sid), lambda r: r["status"] == "connected", 10)
    assert (row["device_jid"], row["qr_rounds"], row["status"]) == (jid, 0, "connected")
    assert exits.reasons == []


async def test_bad_sends_fail_with_our_errors(core: Factory) -> None:
    session, _ = await core()
    await wait_status(session, SessionStatus.QR_READY)
    with pytest.raises(SessionNotConnected):
        await session.send_text("+15557770001", "hello")
    await session.simulate("scan", phone="+15551239002", display_name=None)
    await wait_status(session, SessionStatus.CONNECTED)
    with pytest.raises(InvalidInput):
        await session.send_text("+15557770001", "   ")
    with pytest.raises(InvalidRecipient):
        await session.send_text("not a number", "hello")


async def test_a_dead_redis_never_holds_a_session_back(core: Factory, redis_url: str) -> None:
    session, _ = await core(redis="redis://127.0.0.1:1/0")  # nothing listens there
    await wait_status(session, SessionStatus.QR_READY, timeout=5)
    await session.simulate("scan", phone="+15551239003", display_name=None)
    await wait_status(session, SessionStatus.CONNECTED, timeout=5)


async def test_status_and_qr_are_published(core: Factory, redis_url: str, database_url: str) -> None:
    sid = await insert_session(database_url)
    async with frames(redis_url, sid) as got:
        session, _ = await core(sid)
        qr = await got.wait_for("qr", lambda b: True, timeout=5)
        status = await got.wait_for("status", lambda b: b["status"] == "qr_ready", timeout=5)
    assert qr["qr"].startswith("2@") and qr["expiresAt"].endswith("Z")
    assert (await session.view()).qr in {q["qr"] for q in got.of("qr")}
    assert status == {"status": "qr_ready", "reason": None, "phone": None, "displayName": None}


async def _connected(core: Factory, phone: str, **overrides: object) -> tuple[SessionCore, Exits]:
    session, exits = await core(**overrides)
    await wait_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone=phone, display_name=None)
    await wait_status(session, SessionStatus.CONNECTED)
    return session, exits


async def test_a_reconnect_that_hangs_counts_as_a_failed_dial(core: Factory, database_url: str) -> None:
    """Otherwise a WhatsApp outage would recycle every session of a node without backoff, forever."""
    session, exits = await _connected(core, "+15551239010", connect_timeout_s=1.0)
    await session.simulate("drop", hang_reconnect=True)
    await asyncio.wait_for(exits.happened.wait(), 10)
    assert exits.reasons == ["reconnect did not finish"]
    row = await session_row(database_url, session.session_id)
    assert row["connect_failures"] == 1


async def test_a_temporary_ban_reconnects_by_itself_at_its_expiry(core: Factory, database_url: str) -> None:
    session, exits = await _connected(core, "+15551239011")
    await session._transitions.handle(Disconnected(Reason.BANNED, retrying=False, retry_after_s=0.5))
    view = await session.view()
    assert (view.status, view.reason) == (SessionStatus.DISCONNECTED, Reason.BANNED)
    await asyncio.wait_for(exits.happened.wait(), 5)
    assert exits.reasons == ["temporary ban expired"]
    row = await session_row(database_url, session.session_id)
    assert (row["status"], row["reason"], row["connect_failures"]) == ("disconnected", "banned", 0)
