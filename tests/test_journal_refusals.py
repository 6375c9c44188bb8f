"""A session's journal when PostgreSQL answers but refuses, without Ray: real refusals on a database of the
test's own (tests/refusalkit.py).

- Read-only (a primary demoted in a failover): writes wait in the spool and are stored once the database
  takes writes again; nothing is set aside, nothing published before it is stored.
- A write PostgreSQL rejects for good (a constraint): set aside in `<spool>.failed` (0600), counted, the
  rest goes on; once the cause is fixed a replay stores it, publishes it once, and a second replay does
  nothing. The same when it waited in a backlog that is applied in one transaction: the backlog's other
  writes are stored and published once each, in order.
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from actors.session import SessionCore
from kernel.domain import SessionStatus
from tests.raykit import eventually, frames, insert_session
from tests.refusalkit import POISON, own_database, refuse_poison, set_read_only, stored_texts
from tests.sessionkit import Factory, session_factory, wait_status

pytestmark = pytest.mark.timeout(180)

T = TypeVar("T")

CONTACT = "+15557004321"


@pytest.fixture
async def own_db(postgres_server: str) -> AsyncIterator[str]:
    with own_database(postgres_server) as url:
        yield url


@pytest.fixture
async def core(own_db: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    async with session_factory(own_db, redis_url, tmp_path) as build:
        yield build


async def _connected(core: Factory, own_db: str, phone: str) -> tuple[str, SessionCore]:
    sid = await insert_session(own_db)
    session, exits = await core(sid)
    await wait_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone=phone, display_name="Refusals")
    await wait_status(session, SessionStatus.CONNECTED)
    await eventually(_value(lambda: session.spooled), lambda n: n == 0, 10)
    assert exits.reasons == []
    return sid, session


@contextlib.asynccontextmanager
async def _read_only(postgres_server: str, own_db: str) -> AsyncIterator[None]:
    """The test's database refuses writes (a demoted primary) until the block ends."""
    await set_read_only(postgres_server, own_db, True)
    try:
        yield
    finally:
        await set_read_only(postgres_server, own_db, False)


async def _arrive_spooled(session: SessionCore, texts: list[str]) -> None:
    """`texts` arrive from the contact while the database refuses writes: each waits in the spool."""
    for text in texts:
        await session.simulate("incoming", from_=CONTACT, text=text)
    await eventually(_value(lambda: session.refused), lambda r: r == "read_only", 15)
    assert session.spooled >= len(texts)


def _value(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`read()` as the coroutine function `eventually` polls."""

    async def get() -> T:
        return read()

    return get


async def test_a_read_only_database_keeps_writes_spooled_and_stores_each_once_it_takes_writes(
    core: Factory, own_db: str, postgres_server: str, redis_url: str
) -> None:
    sid, session = await _connected(core, own_db, "+15551239001")
    texts = [f"while read-only {i}" for i in range(5)]
    async with frames(redis_url, sid) as got:
        async with _read_only(postgres_server, own_db):
            await _arrive_spooled(session, texts)
            assert session.failed == 0
            assert got.of("msg") == []  # nothing is published before it is stored
            assert set(texts).isdisjoint(await stored_texts(own_db, sid))
        await eventually(_value(lambda: session.spooled), lambda n: n == 0, 30)
        await got.wait_for("msg", lambda b: b["message"]["text"] == texts[-1], timeout=10)
    stored = await stored_texts(own_db, sid)
    # Stored once each (the store orders by WhatsApp's millisecond timestamps, ties by id) ...
    assert sorted(t for t in stored if t in texts) == texts
    # ... and published once each, in the order they arrived.
    assert [b["message"]["text"] for b in got.of("msg")] == texts
    assert session.failed == 0 and session.refused is None
    assert (await session.view()).status == SessionStatus.CONNECTED


async def test_a_write_the_database_rejects_is_set_aside_privately_and_replayed_once_fixed(
    core: Factory, own_db: str, redis_url: str, tmp_path: Path
) -> None:
    sid, session = await _connected(core, own_db, "+15551239002")
    await refuse_poison(own_db, True)
    async with frames(redis_url, sid) as got:
        for text in ("before", POISON, "after"):
            await session.simulate("incoming", from_=CONTACT, text=text)
        await eventually(_value(lambda: session.failed), lambda n: n == 1, 15)
        await eventually(lambda: stored_texts(own_db, sid), lambda t: "after" in t, 15)
        assert POISON not in await stored_texts(own_db, sid)
        failed = tmp_path / f"{sid}.spool.failed"
        assert stat.S_IMODE(failed.stat().st_mode) == 0o600  # it holds a message: private, like the spool
        assert session.spooled == 0  # one bad write never blocks the rest

        assert session.replay_failed() == 1  # cause not fixed: applied, rejected, set aside again
        await eventually(_value(lambda: session.failed), lambda n: n == 1, 15)
        await eventually(_value(lambda: session.spooled), lambda n: n == 0, 15)

        await refuse_poison(own_db, False)
        assert session.replay_failed() == 1
        await eventually(lambda: stored_texts(own_db, sid), lambda t: POISON in t, 15)
        await got.wait_for("msg", lambda b: b["message"]["text"] == POISON, timeout=10)
        assert session.failed == 0 and not failed.exists()
        assert session.replay_failed() == 0  # nothing left: a second replay applies nothing
        await eventually(_value(lambda: session.spooled), lambda n: n == 0, 15)
    stored = await stored_texts(own_db, sid)
    assert sorted(t for t in stored if t in ("before", POISON, "after")) == sorted(
        ("before", POISON, "after")
    )
    assert [b["message"]["text"] for b in got.of("msg")].count(POISON) == 1
    assert (await session.view()).status == SessionStatus.CONNECTED


async def test_a_bad_write_in_a_backlog_applied_together_is_set_aside_alone(
    core: Factory, own_db: str, postgres_server: str, redis_url: str
) -> None:
    sid, session = await _connected(core, own_db, "+15551239003")
    texts = [f"waited {i}" for i in range(4)] + [POISON] + [f"waited {i}" for i in range(4, 8)]
    good = [t for t in texts if t != POISON]
    await refuse_poison(own_db, True)
    async with frames(redis_url, sid) as got:
        async with _read_only(postgres_server, own_db):
            await _arrive_spooled(session, texts)
        await eventually(_value(lambda: session.spooled), lambda n: n == 0, 30)
        await got.wait_for("msg", lambda b: b["message"]["text"] == good[-1], timeout=10)
        assert session.failed == 1
    stored = await stored_texts(own_db, sid)
    assert POISON not in stored and set(good) <= set(stored)
    # Nothing of the failed transaction was published: each stored message once, in the order it came.
    assert [b["message"]["text"] for b in got.of("msg")] == good
    assert (await session.view()).status == SessionStatus.CONNECTED


def test_set_aside_entries_survive_a_restart_and_a_requeue_that_died_half_way(tmp_path: Path) -> None:
    from actors.spool import Spool
    from actors.writes import WRITES, SaveLastSeen

    path = tmp_path / "s.spool"
    spool = Spool(path, codec=WRITES, max_bytes=1 << 20)
    entries = [SaveLastSeen(datetime(2026, 1, day, tzinfo=UTC)) for day in (1, 2, 3)]
    for entry in entries[:2]:
        spool.set_aside(entry)
    spool.close()
    again = Spool(
        path, codec=WRITES, max_bytes=1 << 20
    )  # the next process counts what the last one set aside
    assert again.failed == 2 and stat.S_IMODE(again.failed_path.stat().st_mode) == 0o600
    again.failed_path.rename(f"{again.failed_path}.requeue")  # a requeue that died after its rename
    again.set_aside(entries[2])
    assert again.requeue_failed() == 2  # the interrupted one first, once
    assert [e for _, e in again.head(10)] == entries[:2] and again.failed == 1
    assert again.requeue_failed() == 1 and again.failed == 0 and not again.failed_path.exists()
    assert [e for _, e in again.head(10)] == entries
    assert again.requeue_failed() == 0
