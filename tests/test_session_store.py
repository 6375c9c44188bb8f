"""A session's own store on real PostgreSQL: its row, history, live messages, receipts, paging, budget."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kernel.domain import Media, Message, MessageStatus, MessageType, Reason, SessionStatus
from kernel.errors import (
    InvalidInput,
    MessageNotFound,
    PhoneAlreadyPaired,
    ServiceUnavailable,
    SessionNotFound,
)
from kernel.events import HistoryChunk, HistoryConversation
from persistence.session_store import SessionStore
from tests.raykit import insert_session

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ALICE = "15550000001@s.whatsapp.net"
BOB = "15550000002@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


def msg(
    mid: str,
    at: datetime,
    chat_id: str = ALICE,
    *,
    from_me: bool = False,
    status: MessageStatus = MessageStatus.SENT,
    text: str | None = "hi",
) -> Message:
    return Message(
        id=mid, chat_id=chat_id, sender=chat_id, from_me=from_me, timestamp=at, text=text, status=status
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SessionStore]:
    async with SessionStore(database_url, await insert_session(database_url)) as store:
        yield store


async def all_messages(store: SessionStore, chat_id: str) -> list[Message]:
    return list((await store.inbox.messages(chat_id, 500)).items)


# --- the session row ---------------------------------------------------------------------------------------


async def test_state_profile_and_counters_survive_a_new_store(store: SessionStore, database_url: str) -> None:
    loaded = await store.load()
    assert loaded is not None
    assert (loaded.view.status, loaded.device_jid, loaded.qr_rounds) == (SessionStatus.DISCONNECTED, None, 0)

    await store.save_state(SessionStatus.CONNECTED, None)
    await store.save_profile(
        phone="+15550009999",
        display_name="Alice",
        profile_pic_url="https://p/x",
        device_jid="15550009999:4@s.whatsapp.net",
    )
    await store.set_counters(qr_rounds=2, connect_failures=5)
    await store.save_profile(display_name="Alice B")  # None keeps the rest
    seen = await store.touch_last_seen()

    async with SessionStore(database_url, store.session_id) as fresh:
        row = await fresh.load()
    assert row is not None
    assert row.view.status is SessionStatus.CONNECTED and row.view.reason is None
    assert (row.view.phone, row.view.display_name, row.view.profile_pic_url) == (
        "+15550009999",
        "Alice B",
        "https://p/x",
    )
    assert (row.device_jid, row.qr_rounds, row.connect_failures) == ("15550009999:4@s.whatsapp.net", 2, 5)
    assert row.view.last_seen == seen

    await store.save_state(SessionStatus.DISCONNECTED, Reason.LOGGED_OUT)
    await store.clear_device()
    await store.set_qr_rounds(0)
    row = await store.load()
    assert row is not None
    # The phone stays: the user is told which phone to scan to keep the chats.
    assert (row.view.reason, row.device_jid, row.view.phone, row.qr_rounds) == (
        Reason.LOGGED_OUT,
        None,
        "+15550009999",
        0,
    )


async def test_a_deleted_session_reads_as_gone(store: SessionStore, database_url: str) -> None:
    await store.inbox.add_message(msg("m1", T0))
    conn = await asyncpg.connect(database_url)
    await conn.execute("DELETE FROM whatsapp_session WHERE id = $1::uuid", store.session_id)
    await conn.close()

    assert await store.load() is None
    with pytest.raises(SessionNotFound):
        await store.save_state(SessionStatus.CONNECTING, None)
    with pytest.raises(SessionNotFound):
        await store.inbox.add_message(msg("m2", T0))
    with pytest.raises(SessionNotFound):
        await store.touch_last_seen()


async def test_one_phone_pairs_with_one_session_even_when_both_claim_it_at_once(database_url: str) -> None:
    for round_ in range(10):
        phone = f"+1555111{round_:04d}"
        stores = [
            SessionStore(database_url, await insert_session(database_url, f"u{round_}-{i}")) for i in (1, 2)
        ]
        try:

            async def claim(store: SessionStore, phone: str = phone) -> object:
                try:
                    await store.save_profile(phone=phone, device_jid=f"{phone[1:]}:1@s.whatsapp.net")
                except PhoneAlreadyPaired as err:
                    return err
                return None

            results = await asyncio.gather(*(claim(s) for s in stores))
            assert sum(isinstance(r, PhoneAlreadyPaired) for r in results) == 1, results
            rows = [await s.load() for s in stores]
            # The loser kept nothing of the claim: no phone, no device.
            assert sorted(((r.view.phone, r.device_jid) for r in rows if r), key=str) == sorted(
                [(phone, f"{phone[1:]}:1@s.whatsapp.net"), (None, None)], key=str
            )
            # Once the winner logs out, the number is free again.
            winner = stores[results.index(None)]
            loser = stores[1 - results.index(None)]
            await winner.clear_device()
            await loser.save_profile(phone=phone)
        finally:
            for s in stores:
                await s.close()


# --- history and live messages -----------------------------------------------------------------------------


async def test_history_chunks_can_repeat_without_duplicating_anything(store: SessionStore) -> None:
    alice = HistoryConversation(
        chat_id=ALICE,
        name="Alice",
        is_group=False,
        unread_count=2,
        messages=tuple(msg(f"a{i}", T0 + timedelta(minutes=i)) for i in range(5)),
    )
    group = HistoryConversation(
        chat_id=GROUP, name="Team", is_group=True, unread_count=0, messages=(msg("g1", T0, GROUP),)
    )
    empty = HistoryConversation(chat_id=BOB, name="Bob", is_group=False, unread_count=0, messages=())
    chunk = HistoryChunk(conversations=(alice, group, empty))

    added = await store.inbox.apply_history(chunk)
    first = await store.inbox.chats(50)
    # What the `chat` frames say: each chat added, then nothing for a chunk that changes nothing.
    assert sorted((c.chat_id, c.unread_count, c.name) for c in added) == sorted(
        [(ALICE, 2, "Alice"), (GROUP, 0, "Team"), (BOB, 0, "Bob")]
    )
    assert await store.inbox.apply_history(chunk) == []
    assert await store.inbox.apply_history([alice]) == []  # a plain sequence works too
    more = replace(alice, messages=(msg("a9", T0 + timedelta(hours=1)),))
    assert [c.chat_id for c in await store.inbox.apply_history([more, group])] == [ALICE]
    await store.inbox.add_message(msg("a9", T0 + timedelta(hours=1)))  # seen live too: no change
    again = await store.inbox.chats(50)

    assert (
        [c.id for c in again.items] == [c.id for c in first.items] == [ALICE, GROUP, BOB]
    )  # chats without messages come last
    by_id = {c.id: c for c in again.items}
    assert by_id[ALICE].unread_count == 2 and by_id[ALICE].name == "Alice"
    assert by_id[ALICE].last_message is not None and by_id[ALICE].last_message.id == "a9"
    assert by_id[GROUP].is_group and by_id[BOB].last_message is None and by_id[BOB].timestamp is None
    assert [m.id for m in await all_messages(store, ALICE)] == ["a9", "a4", "a3", "a2", "a1", "a0"]


async def test_live_messages_count_unread_once_and_move_the_chat_forward(store: SessionStore) -> None:
    assert await store.inbox.add_message(msg("m1", T0), chat_name="Alice") is True
    assert await store.inbox.add_message(msg("m1", T0), chat_name="Alice") is False  # redelivered
    await store.inbox.add_message(msg("m2", T0 + timedelta(seconds=5), from_me=True))
    await store.inbox.add_message(msg("m0", T0 - timedelta(hours=1)))  # late arrival of an older one
    await store.inbox.add_message(msg("m3", T0 + timedelta(seconds=9)), count_unread=False)

    [chat] = (await store.inbox.chats(10)).items
    assert chat.name == "Alice"
    assert chat.unread_count == 2  # m1 and m0; not the repeat, not our own, not the uncounted
    assert chat.last_message is not None and chat.last_message.id == "m3"
    assert chat.timestamp == T0 + timedelta(seconds=9)

    await store.inbox.mark_chat_read(ALICE)
    await store.inbox.mark_chat_read("unknown@s.whatsapp.net")
    assert (await store.inbox.chats(10)).items[0].unread_count == 0


async def test_media_and_its_download_reference_round_trip(store: SessionStore) -> None:
    media = Media(mimetype="audio/ogg; codecs=opus", file_name=None, size=4096, seconds=7, ptt=True)
    sent = Message(
        id="v1",
        chat_id=GROUP,
        sender=BOB,
        sender_name="Bob",
        sender_alt="123@lid",
        from_me=False,
        timestamp=T0,
        type=MessageType.AUDIO,
        media=media,
        media_ref={"direct_path": "/v/t62/abc", "media_key": "a2V5"},
        quoted_id="q1",
    )
    await store.inbox.add_message(sent)
    got = await store.inbox.get_message(GROUP, "v1")
    assert got == sent
    assert got.media_ref == {"direct_path": "/v/t62/abc", "media_key": "a2V5"}
    assert (await store.inbox.chats(5)).items[0].is_group

    with pytest.raises(MessageNotFound):
        await store.inbox.get_message(GROUP, "nope")
    with pytest.raises(MessageNotFound):
        await store.inbox.get_message(ALICE, "v1")


async def test_another_sessions_messages_are_invisible(store: SessionStore, database_url: str) -> None:
    await store.inbox.add_message(msg("m1", T0))
    async with SessionStore(database_url, await insert_session(database_url, "bob")) as other:
        assert (await other.inbox.chats(10)).items == ()
        with pytest.raises(MessageNotFound):
            await other.inbox.get_message(ALICE, "m1")


# --- receipts ----------------------------------------------------------------------------------------------


async def test_receipts_only_move_a_message_forward(store: SessionStore) -> None:
    for mid in ("s1", "s2", "s3"):
        await store.inbox.add_message(msg(mid, T0, from_me=True, status=MessageStatus.SENT))
    await store.inbox.add_message(msg("p1", T0, from_me=True, status=MessageStatus.PENDING))

    changed = await store.inbox.apply_receipt(ALICE, ("s2", "s1", "ghost"), MessageStatus.READ)
    assert [m.id for m in changed] == ["s2", "s1"] and all(m.status is MessageStatus.READ for m in changed)
    assert await store.inbox.apply_receipt(ALICE, ("s1", "s2"), MessageStatus.DELIVERED) == []  # late, older
    assert [m.id for m in await store.inbox.apply_receipt(ALICE, ("s1", "s3"), MessageStatus.DELIVERED)] == [
        "s3"
    ]
    assert [m.id for m in await store.inbox.apply_receipt(ALICE, ("s1",), MessageStatus.PLAYED)] == ["s1"]
    # Only a pending send can fail; a failed one stays failed.
    assert [m.id for m in await store.inbox.apply_receipt(ALICE, ("s3", "p1"), MessageStatus.FAILED)] == [
        "p1"
    ]
    assert await store.inbox.apply_receipt(ALICE, ("p1",), MessageStatus.READ) == []
    # A redelivered message never lowers its status either.
    await store.inbox.add_message(msg("s1", T0, from_me=True, status=MessageStatus.SENT))

    statuses = {m.id: m.status for m in await all_messages(store, ALICE)}
    assert statuses == {
        "s1": MessageStatus.PLAYED,
        "s2": MessageStatus.READ,
        "s3": MessageStatus.DELIVERED,
        "p1": MessageStatus.FAILED,
    }


# --- paging ------------------------------------------------------------------------------------------------


async def test_message_pages_are_newest_first_and_complete_across_equal_timestamps(
    store: SessionStore,
) -> None:
    # Three messages share each timestamp: the cursor must not skip or repeat any of them.
    for i in range(11):
        await store.inbox.add_message(msg(f"m{i:02d}", T0 + timedelta(seconds=i // 3)))
    seen: list[Message] = []
    cursor = None
    for _ in range(10):
        page = await store.inbox.messages(ALICE, 4, cursor)
        assert len(page.items) <= 4
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [m.id for m in seen] == [f"m{i:02d}" for i in (10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)]
    assert cursor is None


async def test_chat_pages_are_newest_first_with_empty_chats_last(store: SessionStore) -> None:
    empties = tuple(
        HistoryConversation(
            chat_id=f"1555000{i:04d}@s.whatsapp.net", name=None, is_group=False, unread_count=0, messages=()
        )
        for i in range(3)
    )
    await store.inbox.apply_history(HistoryChunk(conversations=empties))
    for i in range(5):
        await store.inbox.add_message(
            msg("x", T0 + timedelta(minutes=i // 2), f"1666000{i:04d}@s.whatsapp.net")
        )

    ids: list[str] = []
    cursor = None
    for _ in range(10):
        page = await store.inbox.chats(3, cursor)
        ids += [c.id for c in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert ids == [f"1666000{i:04d}@s.whatsapp.net" for i in (4, 3, 2, 1, 0)] + [
        f"1555000{i:04d}@s.whatsapp.net" for i in (2, 1, 0)
    ]


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "e30",  # {}
        base64.urlsafe_b64encode(b'["messages", "x", "m1"]').decode(),
        base64.urlsafe_b64encode(b'["chats", 1, "m1"]').decode(),  # a chats cursor
        base64.urlsafe_b64encode(b'["messages", 99999999999999999999999, "m1"]').decode(),
    ],
)
async def test_a_malformed_cursor_is_invalid_input(store: SessionStore, cursor: str) -> None:
    with pytest.raises(InvalidInput):
        await store.inbox.messages(ALICE, 10, cursor)


async def test_page_size_is_bounded(store: SessionStore) -> None:
    for limit in (0, -1, 10_000):
        with pytest.raises(InvalidInput):
            await store.inbox.chats(limit)


# --- purge -------------------------------------------------------------------------------------------------


async def test_purge_forgets_chats_and_messages_but_not_the_session(store: SessionStore) -> None:
    await store.inbox.add_message(msg("m1", T0))
    await store.inbox.add_message(msg("g1", T0, GROUP))
    await store.inbox.purge()
    assert (await store.inbox.chats(10)).items == ()
    assert await all_messages(store, ALICE) == []
    assert await store.load() is not None


# --- connection budget -------------------------------------------------------------------------------------


async def _connections(database_url: str, application_name: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
            )
        )
    finally:
        await conn.close()


async def _kill(database_url: str, application_name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await conn.close()


async def test_a_store_never_holds_more_than_one_connection(database_url: str) -> None:
    name = f"budget-{uuid.uuid4().hex[:12]}"
    store = SessionStore(database_url, await insert_session(database_url), application_name=name)
    assert await _connections(database_url, name) == 0  # lazy: nothing until first use

    await store.inbox.add_message(msg("m0", T0))
    assert await _connections(database_url, name) == 1
    for i in range(1, 6):
        await _kill(database_url, name)
        for _ in range(100):  # bounded: the backend exits within milliseconds
            if await _connections(database_url, name) == 0:
                break
            await asyncio.sleep(0.02)
        # Concurrent calls right after the loss share the one replacement connection.
        await asyncio.gather(
            store.inbox.add_message(msg(f"m{i}", T0 + timedelta(seconds=i))),
            store.inbox.chats(10),
            store.load(),
            store.touch_last_seen(),
        )
        assert await _connections(database_url, name) == 1
    assert [m.id for m in await all_messages(store, ALICE)][:2] == ["m5", "m4"]

    await store.close()
    assert await _connections(database_url, name) == 0


async def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    store = SessionStore("postgresql://postgres@127.0.0.1:1/none", str(uuid.uuid4()), connect_timeout=2)
    with pytest.raises(ServiceUnavailable):
        await store.load()
    await store.close()


def test_the_store_does_not_import_the_orm() -> None:
    # Every session is its own process: SQLAlchemy + SQLModel would cost it ~33 MiB (README, Architecture).
    code = (
        "import sys, persistence.session_store; "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'pydantic', 'alembic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_session_process_built_from_its_wiring_does_not_import_the_orm() -> None:
    # What a session actor's process loads: the actor, the stores Ray unpickles into it, both stores built.
    code = (
        "import sys, uuid, actors.actor; from persistence.stores import PostgresStores; "
        "sid = str(uuid.uuid4()); stores = PostgresStores(); "
        "stores.session_store('postgresql://x@127.0.0.1:1/none', sid); "
        "stores.sim_network('postgresql://x@127.0.0.1:1/none', sid); "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'alembic', 'persistence.repo')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
