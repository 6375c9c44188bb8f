"""A group's own events in a session, without Ray (the simulated client, real PostgreSQL and Redis): with
INBOX_CHATS=all each becomes a `chat` frame with `group` and makes or renames the group's chat, once;
with INBOX_CHATS=direct none reaches the store or a frame, and the group calls are `groups_disabled`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.session import SessionCore
from kernel.domain import SessionStatus
from kernel.errors import GroupsDisabled
from kernel.groups import GroupAct, MemberChange
from kernel.settings import asyncpg_dsn
from tests.raykit import eventually, fetchval, frames, insert_session
from tests.sessionkit import Factory, session_factory, wait_status

pytestmark = pytest.mark.timeout(120)

GROUP = "120363077778888999@g.us"
ALICE, BOB = "+15557005501", "+15557005502"
ALICE_JID, BOB_JID = "15557005501@s.whatsapp.net", "15557005502@s.whatsapp.net"


@pytest.fixture
async def core(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    async with session_factory(database_url, redis_url, tmp_path) as build:
        yield build


def _about(frame: dict[str, Any]) -> bool:
    return bool(frame["chatId"] == GROUP)


async def _connected(core: Factory, database_url: str, inbox_chats: str) -> tuple[str, SessionCore]:
    sid = await insert_session(database_url)
    session, _exits = await core(sid, inbox_chats=inbox_chats)
    await wait_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone="+15551238201")
    await wait_status(session, SessionStatus.CONNECTED)
    return sid, session


async def test_group_events_are_chat_frames_and_rename_the_chat(
    core: Factory, database_url: str, redis_url: str
) -> None:
    sid, session = await _connected(core, database_url, "all")
    dsn = asyncpg_dsn(database_url)

    async def name() -> str | None:
        found: str | None = await fetchval(
            dsn, "SELECT name FROM chat WHERE session_id = $1::uuid AND id = $2", sid, GROUP
        )
        return found

    async with frames(redis_url, sid) as got:
        # Alice adds this number
        await session.simulate("group_event", GroupAct(GROUP, ALICE, subject="Climbing"))
        await got.wait_for("chat", lambda b: b["chatId"] == GROUP)
        await eventually(name, lambda n: n == "Climbing", 10)
        await session.simulate("group_event", GroupAct(GROUP, ALICE, subject="Climbing 🧗", join=(BOB,)))
        renamed = await got.wait_for("chat", lambda b: _about(b) and b["group"]["joined"] == [BOB_JID])
        await eventually(name, lambda n: n == "Climbing 🧗", 10)
        await session.simulate("group_event", GroupAct(GROUP, BOB, leave=(BOB,)))
        left = await got.wait_for("chat", lambda b: _about(b) and b["group"]["left"] == [BOB_JID])
        info = await session.groups.group(GROUP)

    ours = [b for b in got.of("chat") if b["chatId"] == GROUP]
    first = ours[0]
    assert (first["name"], first["group"]["by"], first["group"]["subject"]) == (
        "Climbing",
        ALICE_JID,
        "Climbing",
    )
    assert (renamed["name"], renamed["group"]["by"], renamed["unreadCount"]) == ("Climbing 🧗", ALICE_JID, 0)
    assert (left["name"], left["group"]["subject"], left["group"]["by"]) == ("Climbing 🧗", None, BOB_JID)
    assert len(ours) == 3  # one frame per event
    assert (info.subject, [m.jid for m in info.members if m.admin]) == ("Climbing 🧗", [ALICE_JID])
    assert await fetchval(
        dsn, "SELECT is_group FROM chat WHERE session_id = $1::uuid AND id = $2", sid, GROUP
    )


async def test_with_direct_chats_only_groups_stay_out(
    core: Factory, database_url: str, redis_url: str
) -> None:
    sid, session = await _connected(core, database_url, "direct")

    async with frames(redis_url, sid) as got:
        await session.simulate("group_event", GroupAct(GROUP, ALICE, subject="Climbing"))
        await session.simulate("incoming", from_=ALICE, text="after the group event")
        await got.wait_for("msg", lambda b: b["message"]["text"] == "after the group event")
        with pytest.raises(GroupsDisabled):
            await session.groups.groups()
        with pytest.raises(GroupsDisabled):
            await session.groups.change(GROUP, [BOB], MemberChange.ADD)

    assert [b for b in got.of("chat") if b["chatId"] == GROUP] == []
    dsn = asyncpg_dsn(database_url)
    assert (
        await fetchval(dsn, "SELECT count(*) FROM chat WHERE session_id = $1::uuid AND id = $2", sid, GROUP)
        == 0
    )
