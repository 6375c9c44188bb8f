"""The locations, contact cards and polls the neonize adapter sends, as real neonize 0.5.2 protobufs: each
read back through neonize's own dispatcher and our inbound conversion gives what was sent (a phone
shows it the same way), and each has the shape neonize's own builders give."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient, outgoing_kinds
from actors.ports import ClientOptions
from kernel.domain import ContactCard, Location, MessageType, Poll
from kernel.events import MessageReceived
from kernel.message_kinds import vcard
from tests import neonize_events as nev

UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"
ME, ALICE = "15559876543", "15551230001"


@pytest.fixture
async def client() -> AsyncIterator[NeonizeClient]:
    c = NeonizeClient(ClientOptions(session_id=str(uuid4()), device_jid=None, auth_dsn=UNUSED_DSN))
    try:
        yield c
    finally:
        await c.stop()


async def as_received(client: NeonizeClient, content: Any) -> MessageReceived:
    """`content` as our own device would see it arrive (from us, in Alice's chat)."""
    ev = nev.message_event(
        content, chat=nev.jid(ALICE), sender=nev.jid(ME), id="3EB0SENT", timestamp_ms=1_700_000_000_000
    )
    nev.dispatch(client, ev)
    got = await asyncio.wait_for(anext(aiter(client.events())), 5.0)
    assert isinstance(got, MessageReceived)
    return got


async def test_a_location_reads_back_as_the_place_sent(client: NeonizeClient) -> None:
    place = Location(52.3731, 4.8922, name="Dam Square", address="Dam, Amsterdam")

    message = outgoing_kinds.content_message(nev.lib(), place)
    got = (await as_received(client, message)).message

    assert (got.type, got.location, got.summary) == (MessageType.LOCATION, place, "📍 Dam Square")
    bare = outgoing_kinds.content_message(nev.lib(), Location(-33.86, 151.21))
    assert [f.name for f, _ in bare.locationMessage.ListFields()] == ["degreesLatitude", "degreesLongitude"]


async def test_a_contact_card_has_neonizes_shape_and_links_the_account(client: NeonizeClient) -> None:
    from neonize.utils import gen_vcard

    card = ContactCard("Ann; Lee", vcard("Ann; Lee", "15550001234"))
    lib = nev.lib()

    message = outgoing_kinds.content_message(lib, card)
    # What neonize's own `send_contact` sends (its vCard formats the number for display).
    theirs = lib.e2e.Message(
        contactMessage=lib.e2e.ContactMessage(
            displayName="Ann Lee", vcard=gen_vcard("Ann Lee", "15550001234")
        )
    )
    got = (await as_received(client, message)).message

    assert [f.name for f, _ in message.ListFields()] == [f.name for f, _ in theirs.ListFields()]
    assert [f.name for f, _ in message.contactMessage.ListFields()] == ["displayName", "vcard"]
    assert "waid=15550001234:+15550001234" in message.contactMessage.vcard
    assert "FN:Ann\\; Lee\n" in message.contactMessage.vcard  # a name cannot add vCard fields
    assert (got.type, got.contacts, got.summary) == (MessageType.CONTACT, (card,), "👤 Ann; Lee")


async def test_a_poll_carries_its_options_count_and_a_fresh_secret(client: NeonizeClient) -> None:
    single = Poll("Lunch?", ("Pizza", "Sushi"), selectable=1)
    many = Poll("Which days?", tuple(f"Day {n}" for n in range(1, 13)), selectable=0)
    lib = nev.lib()

    one, other = outgoing_kinds.content_message(lib, single), outgoing_kinds.content_message(lib, single)
    got_single = (await as_received(client, one)).message
    got_many = (await as_received(client, outgoing_kinds.content_message(lib, many))).message

    assert (got_single.type, got_single.poll, got_single.summary) == (MessageType.POLL, single, "📊 Lunch?")
    assert got_many.poll == many
    assert one.pollCreationMessage.selectableOptionsCount == 1
    secret = one.messageContextInfo.messageSecret
    assert len(secret) == 32 and secret != other.messageContextInfo.messageSecret
    # Our copy keeps the whole message: the secret the votes are encrypted with.
    ref = outgoing_kinds.own_ref(one)
    assert ref["kind"] == "pollCreationMessage"
    assert lib.e2e.Message.FromString(base64.b64decode(ref["message"])) == one
