"""MESSAGE_RETENTION_DAYS on real PostgreSQL: old messages go, every chat keeps a valid last message,
and the registry runs the purge by itself on its schedule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from actors.registry import start_registry
from api.wiring import registry_config as registry_config_from_settings
from kernel.domain import Message
from kernel.settings import Settings
from persistence import repo
from persistence.db import create_engine, session_factory
from persistence.session_store import SessionStore
from tests.raykit import eventually, insert_session, registry_config

OLD_CHAT = "111@s.whatsapp.net"  # every message older than the retention
MIXED_CHAT = "222@s.whatsapp.net"  # old messages, then a recent one


def _msg(chat_id: str, mid: str, at: datetime) -> Message:
    return Message(id=mid, chat_id=chat_id, sender=chat_id, from_me=False, timestamp=at, text=mid)


async def _fill(database_url: str, session_id: str) -> None:
    now = datetime.now(UTC)
    async with SessionStore(database_url, session_id) as store:
        for i in range(5):
            await store.inbox.add_message(_msg(OLD_CHAT, f"a{i}", now - timedelta(days=40 - i)))
            await store.inbox.add_message(_msg(MIXED_CHAT, f"b{i}", now - timedelta(days=50 - i)))
        await store.inbox.add_message(_msg(MIXED_CHAT, "b-recent", now - timedelta(days=1)))


async def _ids(database_url: str, session_id: str) -> dict[str, list[str]]:
    async with SessionStore(database_url, session_id) as store:
        return {
            chat: [m.id for m in (await store.inbox.messages(chat, 50)).items]
            for chat in (OLD_CHAT, MIXED_CHAT)
        }


async def _dangling_last_messages(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM chat c WHERE c.last_message_id IS NOT NULL AND NOT EXISTS"
                " (SELECT 1 FROM message m WHERE m.session_id = c.session_id AND m.chat_id = c.id"
                " AND m.id = c.last_message_id)"
            )
        )
    finally:
        await conn.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


async def test_purge_keeps_each_chats_last_message(db: AsyncSession, database_url: str) -> None:
    sid = await insert_session(database_url)
    await _fill(database_url, sid)

    assert await repo.purge_old_messages(db, 30, batch=3) == 4 + 5  # in batches smaller than the work

    kept = await _ids(database_url, sid)
    assert kept == {OLD_CHAT: ["a4"], MIXED_CHAT: ["b-recent"]}
    assert await _dangling_last_messages(database_url) == 0
    async with SessionStore(database_url, sid) as store:
        chats = (await store.inbox.chats(50)).items
    assert {c.id: c.last_message.id if c.last_message else None for c in chats} == {
        MIXED_CHAT: "b-recent",
        OLD_CHAT: "a4",
    }
    assert [c.id for c in chats] == [MIXED_CHAT, OLD_CHAT], "the chat list keeps its order"
    inbox = await repo.inbox_chats(db, "user-1", None, 50)
    assert all(entry.chat.last_message is not None for entry in inbox)
    assert await repo.purge_old_messages(db, 30) == 0, "nothing left to purge: the pass is idempotent"


@pytest.mark.ray
async def test_the_registry_purges_on_its_schedule(database_url: str, redis_url: str, namespace: str) -> None:
    sid = await insert_session(database_url)
    await _fill(database_url, sid)
    start_registry(
        registry_config(
            database_url, redis_url, namespace, message_retention_days=30, retention_interval_s=0.5
        )
    )
    await eventually(
        lambda: _ids(database_url, sid),
        lambda kept: kept == {OLD_CHAT: ["a4"], MIXED_CHAT: ["b-recent"]},
        timeout=30,
    )
    # Messages that grow old later go on a later run of the schedule, not only at start.
    async with SessionStore(database_url, sid) as store:
        await store.inbox.add_message(_msg(MIXED_CHAT, "b-older", datetime.now(UTC) - timedelta(days=31)))
    await eventually(lambda: _ids(database_url, sid), lambda kept: "b-older" not in kept[MIXED_CHAT])
    assert await _dangling_last_messages(database_url) == 0


def test_the_setting_reaches_the_registry() -> None:
    settings = Settings(
        database_url="postgresql://u@h/db",
        redis_url="redis://h:6379/0",
        message_retention_days=7,
        retention_interval_s=60,
        orphan_grace_s=120,
        _env_file=None,  # type: ignore[call-arg]
    )
    config = registry_config_from_settings(settings)
    assert (config.message_retention_days, config.retention_interval_s, config.orphan_grace_s) == (7, 60, 120)
