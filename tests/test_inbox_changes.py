"""Reactions, edits, revokes and reads in a session's store on real PostgreSQL, applied as the journal does:
each answers what changed, and applied again (a replay after a crash) changes nothing and answers None, so
no frame is published twice; a message seen again keeps its revoke and its edit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from kernel.domain import Media, Message, MessageType, Reaction
from persistence.inbox_changes import ChatRead
from persistence.session_store import SessionStore
from tests.raykit import insert_session

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ALICE = "15550000001@s.whatsapp.net"
ME = "15559990000@s.whatsapp.net"


def incoming(mid: str, at: datetime, **fields: object) -> Message:
    return Message(id=mid, chat_id=ALICE, sender=ALICE, from_me=False, timestamp=at, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SessionStore]:
    async with SessionStore(database_url, await insert_session(database_url)) as store:
        yield store


async def test_one_reaction_per_sender_the_latest_wins_and_a_replay_changes_nothing(
    store: SessionStore,
) -> None:
    await store.inbox.add_message(incoming("M1", T0, text="lunch?"), chat_name="Alice")
    ours = Reaction(ME, "👍", T0 + timedelta(seconds=1))
    theirs = Reaction(ALICE, "😂", T0 + timedelta(seconds=2))

    first = await store.inbox.apply_reaction(ALICE, "M1", ours)
    assert first is not None and first.reactions == (ours,)
    assert await store.inbox.apply_reaction(ALICE, "M1", ours) is None  # replayed
    both = await store.inbox.apply_reaction(ALICE, "M1", theirs)
    assert both is not None and set(both.reactions) == {ours, theirs}
    changed = Reaction(ALICE, "❤️", T0 + timedelta(seconds=3))
    assert await store.inbox.apply_reaction(ALICE, "M1", changed) is not None
    assert await store.inbox.apply_reaction(ALICE, "M1", theirs) is None  # older than the one stored
    removed = await store.inbox.apply_reaction(ALICE, "M1", Reaction(ME, "", T0 + timedelta(seconds=4)))
    assert removed is not None and removed.reactions == (changed,)
    assert await store.inbox.apply_reaction(ALICE, "M1", Reaction(ME, "", T0 + timedelta(seconds=4))) is None
    assert await store.inbox.apply_reaction(ALICE, "UNKNOWN", ours) is None

    (stored,) = (await store.inbox.messages(ALICE, 10)).items
    assert stored.reactions == (changed,)


async def test_an_edit_keeps_the_id_and_survives_the_message_arriving_again(store: SessionStore) -> None:
    original = incoming("M2", T0, text="meet at noon")
    await store.inbox.add_message(original, chat_name=None)
    at = T0 + timedelta(minutes=1)

    edited = await store.inbox.apply_edit(ALICE, "M2", "meet at one", at)
    assert edited is not None and (edited.id, edited.text, edited.edited_at) == ("M2", "meet at one", at)
    assert await store.inbox.apply_edit(ALICE, "M2", "meet at one", at) is None  # replayed
    assert await store.inbox.apply_edit(ALICE, "M2", "older edit", at - timedelta(seconds=30)) is None
    await store.inbox.add_message(original, chat_name=None)  # the message replayed after its edit

    assert (await store.inbox.get_message(ALICE, "M2")).text == "meet at one"


async def test_a_revoke_leaves_no_content_even_when_the_message_arrives_again(store: SessionStore) -> None:
    ref = {"sim": "incoming", "size": 10}
    photo = incoming(
        "M3", T0, type=MessageType.IMAGE, text="caption", media=Media("image/jpeg", size=10), media_ref=ref
    )
    await store.inbox.add_message(photo, chat_name=None)
    await store.inbox.apply_reaction(ALICE, "M3", Reaction(ME, "👍", T0))

    revoked = await store.inbox.apply_revoke(ALICE, "M3")
    assert revoked is not None and revoked.type is MessageType.REVOKED
    assert (revoked.text, revoked.media, revoked.media_ref, revoked.reactions) == (None, None, None, ())
    assert await store.inbox.apply_revoke(ALICE, "M3") is None  # replayed
    await store.inbox.add_message(photo, chat_name=None)  # the message replayed after its revoke
    assert await store.inbox.apply_edit(ALICE, "M3", "back?", T0 + timedelta(minutes=1)) is None
    assert (
        await store.inbox.apply_reaction(ALICE, "M3", Reaction(ALICE, "😮", T0 + timedelta(minutes=1)))
        is None
    )

    again = await store.inbox.get_message(ALICE, "M3")
    assert (again.type, again.text, again.media, again.media_ref) == (MessageType.REVOKED, None, None, None)


async def test_reads_lower_the_unread_count_and_never_raise_it(store: SessionStore) -> None:
    for i in range(4):
        await store.inbox.add_message(
            incoming(f"R{i}", T0 + timedelta(minutes=i), text=str(i)), chat_name="Alice"
        )
    assert [m.id for m in await store.inbox.unread_incoming(ALICE, 100)] == ["R3", "R2", "R1", "R0"]

    assert await store.inbox.apply_chat_read(ALICE, T0 + timedelta(minutes=1, seconds=30)) == ChatRead(
        ALICE, 2, "Alice"
    )
    assert await store.inbox.apply_chat_read(ALICE, T0 + timedelta(minutes=1, seconds=30)) is None  # replayed
    assert await store.inbox.apply_chat_read(ALICE, T0) is None  # an older read never raises the count
    assert [m.id for m in await store.inbox.unread_incoming(ALICE, 100)] == ["R3", "R2"]
    assert await store.inbox.apply_chat_read(ALICE) == ChatRead(ALICE, 0, "Alice")
    assert await store.inbox.unread_incoming(ALICE, 100) == []
    assert await store.inbox.apply_chat_read("15550000009@s.whatsapp.net") is None  # no such chat

    await store.inbox.add_message(incoming("R4", T0 + timedelta(minutes=9), text="4"), chat_name=None)
    (chat,) = (await store.inbox.chats(10)).items
    assert chat.unread_count == 1
