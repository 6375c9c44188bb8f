"""The neonize adapter's reactions, edits, revokes, reads on the phone and presence, with real neonize 0.5.2
event protobufs through neonize's own dispatcher (no Go call in this process), and the messages it sends
compared with neonize's own builders.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient, inbox
from actors.ports import ClientOptions
from kernel.domain import Message, Reaction
from kernel.errors import NotOwnMessage, SessionNotConnected
from kernel.events import (
    ChatRead,
    ClientEvent,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    Presence,
    ReactionChanged,
)
from tests import neonize_events as nev

UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"
ALICE, ME = "15551230001", "15559876543"
LID = "123456789012345"
GROUP = "120363012345678901"
T0_MS = 1_700_000_000_000
AT = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.fixture
async def client() -> AsyncIterator[NeonizeClient]:
    c = NeonizeClient(ClientOptions(session_id=str(uuid4()), device_jid=None, auth_dsn=UNUSED_DSN))
    try:
        yield c
    finally:
        await c.stop()


async def events_of(client: NeonizeClient, *protos: Any) -> list[ClientEvent]:
    """Dispatch each event, then a plain text message as a marker: everything converted before it."""
    for proto in protos:
        nev.dispatch(client, proto)
    nev.dispatch(client, _message(nev.wa(conversation="marker"), id="MARKER"))
    out: list[ClientEvent] = []
    it = aiter(client.events())
    while True:
        event = await asyncio.wait_for(anext(it), 5.0)
        if isinstance(event, MessageReceived) and event.message.id == "MARKER":
            return out
        out.append(event)


def _message(content: Any, *, id: str, from_me: bool = False, **kw: Any) -> Any:
    kw.setdefault("chat", nev.jid(ALICE))
    kw.setdefault("sender", nev.jid(ME) if from_me else nev.jid(ALICE))
    return nev.message_event(content, id=id, timestamp_ms=T0_MS, from_me=from_me, **kw)


def _reaction(target: str, emoji: str, at_ms: int) -> Any:
    e2e = nev.lib().e2e
    key = {"remoteJID": f"{ALICE}@s.whatsapp.net", "fromMe": True, "ID": target}
    return nev.wa(reactionMessage=e2e.ReactionMessage(key=key, text=emoji, senderTimestampMS=at_ms))


def _protocol(kind: str, target: str, edited: Any = None) -> Any:
    e2e = nev.lib().e2e
    fields: dict[str, Any] = {
        "key": {"remoteJID": f"{ALICE}@s.whatsapp.net", "fromMe": False, "ID": target},
        "type": e2e.ProtocolMessage.Type.Value(kind),
    }
    if edited is not None:
        fields |= {"editedMessage": edited, "timestampMS": T0_MS + 60_000}
    return e2e.ProtocolMessage(**fields)


async def test_a_reaction_and_its_removal(client: NeonizeClient) -> None:
    got = await events_of(
        client,
        _message(_reaction("3EB0MINE", "👍", T0_MS + 5_000), id="R1"),
        _message(_reaction("3EB0MINE", "", T0_MS + 9_000), id="R2"),
    )

    alice = f"{ALICE}@s.whatsapp.net"
    assert got == [
        ReactionChanged(
            alice, "3EB0MINE", Reaction(alice, "👍", datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC))
        ),
        ReactionChanged(
            alice, "3EB0MINE", Reaction(alice, "", datetime(2023, 11, 14, 22, 13, 29, tzinfo=UTC))
        ),
    ]


async def test_a_reaction_from_a_lid_contact_lands_in_the_phone_chat(client: NeonizeClient) -> None:
    ev = _message(
        _reaction("3EB0MINE", "❤️", T0_MS),
        id="R3",
        chat=nev.jid(LID, "lid"),
        sender=nev.jid(LID, "lid"),
        sender_alt=nev.jid(ALICE),
    )

    got = [e for e in await events_of(client, ev) if isinstance(e, ReactionChanged)]

    alice = f"{ALICE}@s.whatsapp.net"
    assert got == [ReactionChanged(alice, "3EB0MINE", Reaction(alice, "❤️", AT))]


async def test_a_revoke_and_both_forms_of_an_edit(client: NeonizeClient) -> None:
    e2e = nev.lib().e2e
    revoke = nev.wa(protocolMessage=_protocol("REVOKE", "3EB0GONE"))
    bare_edit = nev.wa(protocolMessage=_protocol("MESSAGE_EDIT", "3EB0E1", nev.wa(conversation="fixed")))
    wrapped = e2e.FutureProofMessage(
        message=nev.wa(
            protocolMessage=_protocol(
                "MESSAGE_EDIT", "3EB0E2", nev.wa(extendedTextMessage=e2e.ExtendedTextMessage(text="better"))
            )
        )
    )
    wrapped_edit = nev.wa(editedMessage=wrapped)

    got = await events_of(
        client,
        _message(revoke, id="P1"),
        _message(bare_edit, id="P2"),
        _message(wrapped_edit, id="P3"),
    )

    alice = f"{ALICE}@s.whatsapp.net"
    edited_at = datetime(2023, 11, 14, 22, 14, 20, tzinfo=UTC)
    assert got == [
        MessageRevoked(alice, "3EB0GONE", AT),
        MessageEdited(alice, "3EB0E1", "fixed", edited_at),
        MessageEdited(alice, "3EB0E2", "better", edited_at),
    ]


async def test_actions_in_chats_the_inbox_does_not_hold_produce_nothing(client: NeonizeClient) -> None:
    status = nev.jid("status", "broadcast")
    got = await events_of(client, _message(_reaction("X", "👍", T0_MS), id="S1", chat=status))
    assert got == []


async def test_reading_on_the_phone_is_a_chat_read_up_to_then(client: NeonizeClient) -> None:
    chat = nev.jid(ALICE)
    got = await events_of(
        client,
        nev.receipt("READ_SELF", chat=chat, sender=nev.jid(ME), ids=["A1"], timestamp_s=1_700_000_000),
        nev.receipt(
            "READ", chat=chat, sender=nev.jid(ME), ids=["A2"], timestamp_s=1_700_000_030, from_me=True
        ),
    )

    alice = f"{ALICE}@s.whatsapp.net"
    assert got == [ChatRead(alice, AT), ChatRead(alice, datetime(2023, 11, 14, 22, 13, 50, tzinfo=UTC))]


async def test_typing_recording_paused_and_online(client: NeonizeClient) -> None:
    alice_jid = nev.jid(ALICE)
    got = await events_of(
        client,
        nev.chat_presence(alice_jid, "COMPOSING"),
        nev.chat_presence(alice_jid, "COMPOSING", "AUDIO"),
        nev.chat_presence(nev.jid(LID, "lid"), "PAUSED", sender_alt=alice_jid),
        nev.presence(alice_jid, unavailable=False),
        nev.presence(alice_jid, unavailable=True, last_seen_s=1_700_000_000),
        nev.presence(nev.jid(GROUP, "g.us"), unavailable=False),
    )

    alice = f"{ALICE}@s.whatsapp.net"
    assert got == [
        Presence(alice, "composing"),
        Presence(alice, "recording"),
        Presence(alice, "paused"),
        Presence(alice, "available"),
        Presence(alice, "unavailable", AT),
    ]


# ---------------------------------------------------------------------- what we send


def _ours(chat: str = f"{ALICE}@s.whatsapp.net", *, from_me: bool = True, sender: str = "") -> Message:
    return Message("3EB0OURS", chat, sender or f"{ME}@s.whatsapp.net", from_me, datetime.now(UTC), text="hi")


def test_our_edit_and_revoke_are_what_neonize_builds() -> None:
    from neonize.builder import build_edit, build_revoke

    lib = nev.lib()
    chat = nev.jid(ALICE)
    mine = _ours()

    edit = inbox.edit_message(lib, mine, "hello")
    expected = build_edit(chat, mine.id, lib.e2e.Message(conversation="hello"))
    for built in (edit, expected):
        built.editedMessage.message.protocolMessage.timestampMS = 0
    assert edit == expected

    assert inbox.revoke_message(lib, mine) == build_revoke(chat, nev.jid(ME), mine.id, nev.jid(ME))


def test_our_reaction_names_the_author_of_someone_elses_group_message() -> None:
    lib = nev.lib()
    theirs = _ours(f"{GROUP}@g.us", from_me=False, sender=f"{ALICE}@s.whatsapp.net")

    reaction = inbox.reaction_message(lib, theirs, "🎉").reactionMessage
    removal = inbox.reaction_message(lib, _ours(), "").reactionMessage

    assert (reaction.text, reaction.key.ID, reaction.key.remoteJID) == ("🎉", "3EB0OURS", f"{GROUP}@g.us")
    assert (reaction.key.fromMe, reaction.key.participant) == (False, f"{ALICE}@s.whatsapp.net")
    assert (removal.text, removal.key.fromMe, removal.key.participant) == ("", True, "")
    assert abs(reaction.senderTimestampMS / 1000 - datetime.now(UTC).timestamp()) < 60


async def test_actions_refuse_before_the_connection_and_on_others_messages(client: NeonizeClient) -> None:
    theirs = _ours(from_me=False, sender=f"{ALICE}@s.whatsapp.net")
    with pytest.raises(SessionNotConnected):
        await client.send_reaction(theirs, "👍")
    with pytest.raises(SessionNotConnected):
        await client.send_chat_presence(f"{ALICE}@s.whatsapp.net", "composing")
    with pytest.raises(NotOwnMessage):
        await client.edit_message(theirs, "no")
    with pytest.raises(NotOwnMessage):
        await client.revoke_message(theirs)
