"""The API's repository on real PostgreSQL: slot rules, ownership, phones, inbox, deletion, retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kernel.domain import Message, SessionStatus
from kernel.errors import (
    InvalidPhone,
    InvalidSlot,
    MaxSessionsReached,
    PhoneAlreadyPaired,
    SessionNotFound,
    SlotTaken,
)
from persistence import repo
from persistence.db import create_engine, session_factory
from persistence.session_store import SessionStore

MAX = 3
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def msg(chat_id: str, mid: str, at: datetime, *, text: str = "hi", from_me: bool = False) -> Message:
    return Message(id=mid, chat_id=chat_id, sender=chat_id, from_me=from_me, timestamp=at, text=text)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=4, max_overflow=0)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
async def db(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


async def _count(database_url: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


# --- slots -------------------------------------------------------------------------------------------------


async def test_new_sessions_take_the_lowest_free_slot(db: AsyncSession) -> None:
    created = [await repo.create_session(db, "alice", None, MAX) for _ in range(3)]
    assert [s.slot for s in created] == [1, 2, 3]
    assert all(s.status is SessionStatus.DISCONNECTED and s.phone is None for s in created)

    await repo.delete_session(db, created[1].id, user_id="alice")
    again = await repo.create_session(db, "alice", None, MAX)
    assert again.slot == 2
    assert [s.slot for s in await repo.list_sessions(db, "alice")] == [1, 2, 3]


async def test_a_fourth_number_is_refused(db: AsyncSession) -> None:
    for slot in (3, 1, 2):
        await repo.create_session(db, "alice", slot, MAX)
    with pytest.raises(MaxSessionsReached):
        await repo.create_session(db, "alice", None, MAX)
    with pytest.raises(MaxSessionsReached):
        await repo.create_session(db, "alice", 2, MAX)
    # Other users are not affected.
    assert (await repo.create_session(db, "bob", None, MAX)).slot == 1


@pytest.mark.parametrize("slot", [0, -1, 4, 100])
async def test_a_slot_out_of_range_is_invalid(db: AsyncSession, slot: int) -> None:
    with pytest.raises(InvalidSlot):
        await repo.create_session(db, "alice", slot, MAX)
    assert await repo.list_sessions(db, "alice") == []


async def test_a_taken_slot_conflicts(db: AsyncSession) -> None:
    first = await repo.create_session(db, "alice", 2, MAX)
    with pytest.raises(SlotTaken):
        await repo.create_session(db, "alice", 2, MAX)
    assert await repo.list_sessions(db, "alice") == [first]
    assert (await repo.create_session(db, "bob", 2, MAX)).slot == 2


async def test_racing_creates_for_the_last_free_slot_let_exactly_one_win(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def create(user: str, slot: int | None) -> object:
        async with sessions() as db:
            try:
                return await repo.create_session(db, user, slot, MAX)
            except (MaxSessionsReached, SlotTaken) as err:
                return err

    for round_ in range(20):
        user = f"racer-{round_}"
        async with sessions() as db:
            await repo.create_session(db, user, 1, MAX)
            await repo.create_session(db, user, 2, MAX)
        # Lowest-free-slot creates and an explicit one for the same last slot, all at once.
        results = await asyncio.gather(create(user, None), create(user, None), create(user, 3))
        winners = [r for r in results if not isinstance(r, Exception)]
        assert len(winners) == 1, results
        assert all(isinstance(r, MaxSessionsReached | SlotTaken) for r in results if r not in winners)
        async with sessions() as db:
            assert [s.slot for s in await repo.list_sessions(db, user)] == [1, 2, 3]


async def test_simultaneous_creates_each_get_their_own_slot(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def create(user: str) -> object:
        async with sessions() as db:
            try:
                return (await repo.create_session(db, user, None, MAX)).slot
            except MaxSessionsReached as err:
                return err

    for round_ in range(10):
        results = await asyncio.gather(*(create(f"burst-{round_}") for _ in range(MAX + 1)))
        assert sorted(r for r in results if isinstance(r, int)) == [1, 2, 3], results
        assert sum(isinstance(r, MaxSessionsReached) for r in results) == 1, results


# --- ownership ---------------------------------------------------------------------------------------------


async def test_another_users_session_looks_missing(db: AsyncSession) -> None:
    mine = await repo.create_session(db, "alice", None, MAX)
    assert await repo.session_owner(db, mine.id) == "alice"
    assert await repo.session_owner(db, "00000000-0000-0000-0000-000000000000") is None
    assert await repo.session_owner(db, "not-a-uuid") is None

    for user, sid in [
        ("mallory", mine.id),
        ("alice", "00000000-0000-0000-0000-000000000000"),
        ("alice", "not-a-uuid"),
    ]:
        with pytest.raises(SessionNotFound) as caught:
            await repo.delete_session(db, sid, user_id=user)
        assert caught.value.code == "session_not_found"
    assert await repo.list_sessions(db, "alice") == [mine]
    assert await repo.list_sessions(db, "mallory") == []


# --- phones and users --------------------------------------------------------------------------------------


async def test_a_phone_can_be_paired_to_one_session_only(
    db: AsyncSession, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for round_ in range(10):
        a = await repo.create_session(db, f"a{round_}", None, MAX)
        b = await repo.create_session(db, f"b{round_}", None, MAX)
        phone = f"+1555000{round_:04d}"

        async def pair(sid: str, phone: str = phone) -> object:
            async with sessions() as own:
                try:
                    return await repo.set_session_phone(
                        own, sid, phone, device_jid=f"{phone[1:]}:{sid[:2]}@x"
                    )
                except PhoneAlreadyPaired as err:
                    return err

        results = await asyncio.gather(pair(a.id), pair(b.id))
        assert sum(isinstance(r, PhoneAlreadyPaired) for r in results) == 1, results
        phones = [(await repo.list_sessions(db, s.user_id))[0].phone for s in (a, b)]
        assert sorted(phones, key=str) == sorted([phone, None], key=str)


async def test_users_phone_is_stored_as_e164(db: AsyncSession) -> None:
    assert await repo.get_user(db, "alice") == repo.UserView("alice", None)
    assert (await repo.set_user_phone(db, "alice", "+1 (415) 555-2671")).whatsapp_phone == "+14155552671"
    assert (await repo.get_user(db, "alice")).whatsapp_phone == "+14155552671"
    await repo.set_user_phone(db, "alice", "44 20 7946 0958")
    assert (await repo.get_user(db, "alice")).whatsapp_phone == "+442079460958"
    for bad in ("hello", "+1 555", ""):
        with pytest.raises(InvalidPhone):
            await repo.set_user_phone(db, "alice", bad)
    assert (await repo.get_user(db, "alice")).whatsapp_phone == "+442079460958"


# --- supervisor views --------------------------------------------------------------------------------------


async def test_sessions_to_run_lists_paired_sessions_first(db: AsyncSession) -> None:
    unpaired = await repo.create_session(db, "alice", None, MAX)
    paired = await repo.create_session(db, "bob", None, MAX)
    await repo.set_session_phone(db, paired.id, "+15550001111", device_jid="15550001111:3@s.whatsapp.net")

    rows = await repo.sessions_to_run(db)
    assert [(r.id, r.device_jid) for r in rows] == [
        (paired.id, "15550001111:3@s.whatsapp.net"),
        (unpaired.id, None),
    ]
    assert await repo.session_counts(db) == repo.SessionCounts(total=2, connected=0)


# --- inbox, deletion, retention ----------------------------------------------------------------------------


async def test_inbox_merges_the_users_numbers_by_recency(db: AsyncSession, database_url: str) -> None:
    one = await repo.create_session(db, "alice", None, MAX)
    two = await repo.create_session(db, "alice", None, MAX)
    other = await repo.create_session(db, "mallory", None, MAX)
    async with (
        SessionStore(database_url, one.id) as s1,
        SessionStore(database_url, two.id) as s2,
        SessionStore(database_url, other.id) as s3,
    ):
        await s1.inbox.add_message(msg("111@s.whatsapp.net", "a", T0 + timedelta(minutes=1)))
        await s2.inbox.add_message(msg("222@s.whatsapp.net", "b", T0 + timedelta(minutes=3)))
        await s1.inbox.add_message(msg("333@s.whatsapp.net", "c", T0 + timedelta(minutes=2)))
        await s3.inbox.add_message(msg("999@s.whatsapp.net", "z", T0 + timedelta(minutes=9)))

    inbox = await repo.inbox_chats(db, "alice", None, 10)
    assert [(c.session_id, c.chat.id) for c in inbox] == [
        (two.id, "222@s.whatsapp.net"),
        (one.id, "333@s.whatsapp.net"),
        (one.id, "111@s.whatsapp.net"),
    ]
    assert inbox[0].chat.last_message is not None and inbox[0].chat.last_message.id == "b"
    assert inbox[0].chat.unread_count == 1

    assert [c.chat.id for c in await repo.inbox_chats(db, "alice", None, 2)] == [
        "222@s.whatsapp.net",
        "333@s.whatsapp.net",
    ]
    # Only the numbers asked for, and never someone else's even when asked for.
    only_one = await repo.inbox_chats(db, "alice", [one.id, other.id, "junk"], 10)
    assert {(c.session_id, c.chat.id) for c in only_one} == {
        (one.id, "333@s.whatsapp.net"),
        (one.id, "111@s.whatsapp.net"),
    }
    assert await repo.inbox_chats(db, "alice", [], 10) == []


async def test_deleting_a_session_removes_its_chats_messages_and_sim_keys(
    db: AsyncSession, database_url: str
) -> None:
    gone = await repo.create_session(db, "alice", None, MAX)
    kept = await repo.create_session(db, "alice", None, MAX)
    for session in (gone, kept):
        async with SessionStore(database_url, session.id) as store:
            await store.inbox.add_message(msg("111@s.whatsapp.net", "m1", T0))
            await store.inbox.add_message(msg("111@s.whatsapp.net", "m2", T0 + timedelta(seconds=1)))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO wa_sim.device (jid, session_id, phone) VALUES ('1:1@s', $1::uuid, '+1')", gone.id
        )
    finally:
        await conn.close()

    await repo.delete_session(db, gone.id, user_id="alice")

    for table in ("chat", "message", "wa_sim.device"):
        assert (
            await _count(database_url, f"SELECT count(*) FROM {table} WHERE session_id = $1::uuid", gone.id)
            == 0
        )
    assert (
        await _count(database_url, "SELECT count(*) FROM message WHERE session_id = $1::uuid", kept.id) == 2
    )
    assert await repo.session_owner(db, gone.id) is None
    with pytest.raises(SessionNotFound):
        await repo.delete_session(db, gone.id)


async def test_retention_purge_deletes_only_old_messages(db: AsyncSession, database_url: str) -> None:
    session = await repo.create_session(db, "alice", None, MAX)
    now = datetime.now(UTC)
    async with SessionStore(database_url, session.id) as store:
        for i in range(5):
            await store.inbox.add_message(
                msg("111@s.whatsapp.net", f"old{i}", now - timedelta(days=40, minutes=i))
            )
        await store.inbox.add_message(msg("111@s.whatsapp.net", "recent", now - timedelta(days=2)))

        assert await repo.purge_old_messages(db, 0) == 0
        assert await repo.purge_old_messages(db, 30, batch=2) == 5
        assert await repo.purge_old_messages(db, 30) == 0
        page = await store.inbox.messages("111@s.whatsapp.net", 50)
    assert [m.id for m in page.items] == ["recent"]
