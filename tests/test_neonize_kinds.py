"""Every message kind, every chat kind and both addressing forms, through the neonize adapter: real
protobuf event objects delivered by neonize's own dispatcher (no network, no Go call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient
from actors.ports import ClientOptions
from kernel.domain import ContactCard, Location, MessageStatus, MessageType, Poll
from kernel.events import ClientEvent, IdentityLink, MessageReceived, PictureChanged, Receipt
from tests import neonize_events as nev

ALICE, BOB = "15551230001", "15551230002"
LID = "123456789012345"
GROUP = "120363012345678901"
VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Carol\nTEL;type=CELL;waid=15551230003:+15551230003\nEND:VCARD"


@pytest.fixture
async def client() -> AsyncIterator[NeonizeClient]:
    c = NeonizeClient(
        ClientOptions(session_id=str(uuid4()), device_jid=None, auth_dsn="postgresql://nobody@127.0.0.1:1/x")
    )
    try:
        yield c
    finally:
        await c.stop()


def e2e() -> Any:
    return nev.lib().e2e


def ctx(quoted: str = "3EB0QUOTED") -> Any:
    return e2e().ContextInfo(stanzaID=quoted, participant=f"{ALICE}@s.whatsapp.net")


def from_alice(content: Any, mid: str, **kw: Any) -> Any:
    return nev.message_event(
        content, chat=nev.jid(ALICE), sender=nev.jid(ALICE), id=mid, timestamp_ms=1_700_000_000_000, **kw
    )


async def received(client: NeonizeClient, *events: Any, count: int | None = None) -> list[ClientEvent]:
    """Dispatch `events`, then read what the adapter emits (`count` events, default one per event)."""
    for event in events:
        nev.dispatch(client, event)
    it = aiter(client.events())
    return [await asyncio.wait_for(anext(it), 5) for _ in range(count or len(events))]


async def message(client: NeonizeClient, content: Any, mid: str = "3EB0K1") -> Any:
    (got,) = await received(client, from_alice(content, mid))
    assert isinstance(got, MessageReceived), got
    return got.message


async def test_location_with_place_and_reply_target(client: NeonizeClient) -> None:
    loc = e2e().LocationMessage(
        degreesLatitude=48.8584,
        degreesLongitude=2.2945,
        name="Eiffel Tower",
        address="Champ de Mars, Paris",
        URL="https://maps.example/e",
        comment="here!",
        contextInfo=ctx(),
    )

    got = await message(client, nev.wa(locationMessage=loc))

    assert got.type is MessageType.LOCATION
    assert got.location == Location(
        48.8584, 2.2945, "Eiffel Tower", "Champ de Mars, Paris", "https://maps.example/e"
    )
    assert (got.text, got.summary, got.quoted_id) == ("here!", "📍 Eiffel Tower", "3EB0QUOTED")


async def test_live_location(client: NeonizeClient) -> None:
    live = e2e().LiveLocationMessage(degreesLatitude=1.5, degreesLongitude=-2.25, caption="omw")

    got = await message(client, nev.wa(liveLocationMessage=live))

    assert (got.type, got.location, got.text) == (
        MessageType.LOCATION,
        Location(1.5, -2.25, live=True),
        "omw",
    )
    assert got.summary == "📍 Live location"


async def test_one_contact_card_and_a_contacts_array(client: NeonizeClient) -> None:
    one = nev.wa(contactMessage=e2e().ContactMessage(displayName="Carol", vcard=VCARD, contextInfo=ctx("Q1")))
    many = nev.wa(
        contactsArrayMessage=e2e().ContactsArrayMessage(
            displayName="2 contacts",
            contacts=[
                e2e().ContactMessage(displayName="Carol", vcard=VCARD),
                e2e().ContactMessage(displayName="Dan", vcard="BEGIN:VCARD\nFN:Dan\nEND:VCARD"),
            ],
        )
    )

    card = await message(client, one, "C1")
    cards = await message(client, many, "C2")

    assert (card.type, card.contacts, card.summary, card.quoted_id) == (
        MessageType.CONTACT,
        (ContactCard("Carol", VCARD),),
        "👤 Carol",
        "Q1",
    )
    assert [c.display_name for c in cards.contacts] == ["Carol", "Dan"]
    assert (cards.type, cards.summary) == (MessageType.CONTACT, "👤 2 contacts")


@pytest.mark.parametrize("field", ["pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3"])
async def test_polls_of_each_version(client: NeonizeClient, field: str) -> None:
    options = [e2e().PollCreationMessage.Option(optionName=o) for o in ("Pizza", "Sushi", "Tacos")]
    poll = e2e().PollCreationMessage(name="Lunch?", options=options, selectableOptionsCount=1)

    got = await message(client, nev.wa(**{field: poll}))

    assert (got.type, got.poll, got.summary) == (
        MessageType.POLL,
        Poll("Lunch?", ("Pizza", "Sushi", "Tacos"), 1),
        "📊 Lunch?",
    )


async def test_sticker_and_video_note(client: NeonizeClient) -> None:
    sticker = nev.wa(
        stickerMessage=e2e().StickerMessage(mimetype="image/webp", fileLength=2048, contextInfo=ctx())
    )
    ptv = nev.wa(ptvMessage=e2e().VideoMessage(mimetype="video/mp4", seconds=9, fileLength=400_000))

    got_sticker = await message(client, sticker, "S1")
    got_note = await message(client, ptv, "V1")

    assert (got_sticker.type, got_sticker.summary, got_sticker.quoted_id) == (
        MessageType.STICKER,
        "Sticker",
        "3EB0QUOTED",
    )
    assert got_sticker.media_ref is not None
    assert got_note.type is MessageType.VIDEO
    assert got_note.media is not None and got_note.media.video_note and got_note.media.seconds == 9
    assert got_note.summary == "Video message" and got_note.media_ref is not None


@pytest.mark.parametrize("wrapper", ["viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension"])
async def test_view_once_is_marked_and_its_content_not_kept(client: NeonizeClient, wrapper: str) -> None:
    inner = nev.image("secret caption")

    got = await message(client, nev.wa(**{wrapper: e2e().FutureProofMessage(message=inner)}))

    assert got.type is MessageType.IMAGE and got.view_once
    assert (got.text, got.media_ref, got.summary) == (None, None, "View once photo")


async def test_album_parent_is_not_a_message_and_its_children_are(client: NeonizeClient) -> None:
    parent = nev.wa(albumMessage=e2e().AlbumMessage(expectedImageCount=2))
    child = nev.wa(associatedChildMessage=e2e().FutureProofMessage(message=nev.image("first of two")))
    plain_child = nev.image("second of two")

    got = await received(
        client, from_alice(parent, "A0"), from_alice(child, "A1"), from_alice(plain_child, "A2"), count=2
    )

    assert [
        (g.message.id, g.message.type, g.message.text) for g in got if isinstance(g, MessageReceived)
    ] == [
        ("A1", MessageType.IMAGE, "first of two"),
        ("A2", MessageType.IMAGE, "second of two"),
    ]


async def test_ephemeral_and_device_sent_wrappers_are_unwrapped(client: NeonizeClient) -> None:
    ext = e2e().ExtendedTextMessage(text="disappearing", contextInfo=ctx("Q9"))
    ephemeral = nev.wa(ephemeralMessage=e2e().FutureProofMessage(message=nev.wa(extendedTextMessage=ext)))
    own = nev.wa(
        deviceSentMessage=e2e().DeviceSentMessage(
            destinationJID=f"{ALICE}@s.whatsapp.net", message=nev.wa(conversation="from my phone")
        )
    )

    got_ephemeral = await message(client, ephemeral, "E1")
    got_own = await message(client, own, "E2")

    assert (got_ephemeral.type, got_ephemeral.text, got_ephemeral.quoted_id) == (
        MessageType.TEXT,
        "disappearing",
        "Q9",
    )
    assert (got_own.type, got_own.text) == (MessageType.TEXT, "from my phone")


async def test_a_kind_we_do_not_model_still_says_what_it_is(client: NeonizeClient) -> None:
    event = nev.wa(eventMessage=e2e().EventMessage(name="Birthday party", contextInfo=ctx("Q2")))

    got = await message(client, event)

    assert (got.type, got.text, got.summary, got.quoted_id) == (
        MessageType.OTHER,
        "Birthday party",
        "📅 Event",
        "Q2",
    )


@pytest.mark.parametrize(
    ("chat", "sender"),
    [
        (("status", "broadcast"), (ALICE, "s.whatsapp.net")),
        (("120363999999999999", "newsletter"), (ALICE, "s.whatsapp.net")),
        (("867051314767696", "bot"), ("867051314767696", "bot")),
        (("0", "s.whatsapp.net"), ("0", "s.whatsapp.net")),
        (("server", "s.whatsapp.net"), ("server", "s.whatsapp.net")),
    ],
)
async def test_chats_the_inbox_never_opens_produce_no_message(
    client: NeonizeClient, chat: tuple[str, str], sender: tuple[str, str]
) -> None:
    dropped = nev.message_event(
        nev.wa(conversation="not for the inbox"),
        chat=nev.jid(*chat),
        sender=nev.jid(*sender),
        id="X1",
        timestamp_ms=1,
    )
    kept = from_alice(nev.wa(conversation="for the inbox"), "K1")

    (got,) = await received(client, dropped, kept, count=1)

    assert isinstance(got, MessageReceived) and got.message.id == "K1"


async def test_a_broadcast_list_message_lands_in_the_senders_chat(client: NeonizeClient) -> None:
    listed = nev.message_event(
        nev.wa(conversation="to my list"),
        chat=nev.jid("1700000000", "broadcast"),
        sender=nev.jid(ALICE),
        id="B1",
        timestamp_ms=1,
    )

    got = await message_of(client, listed)

    assert (got.chat_id, got.sender, got.text) == (
        f"{ALICE}@s.whatsapp.net",
        f"{ALICE}@s.whatsapp.net",
        "to my list",
    )


async def message_of(client: NeonizeClient, event: Any) -> Any:
    (got,) = await received(client, event)
    assert isinstance(got, MessageReceived)
    return got.message


async def test_group_message_keeps_its_group_and_the_senders_name(client: NeonizeClient) -> None:
    event = nev.message_event(
        nev.wa(conversation="hi all"),
        chat=nev.jid(GROUP, "g.us"),
        sender=nev.jid(BOB),
        group=True,
        pushname="Bob",
        id="G1",
        timestamp_ms=1,
    )

    (got,) = await received(client, event)

    assert isinstance(got, MessageReceived) and got.chat_name is None  # a group's name is its subject
    assert (got.message.chat_id, got.message.sender_name) == (f"{GROUP}@g.us", "Bob")


async def test_a_lid_addressed_message_with_its_phone_number_reveals_the_link(client: NeonizeClient) -> None:
    event = nev.message_event(
        nev.wa(conversation="by lid"),
        chat=nev.jid(LID, "lid"),
        sender=nev.jid(LID, "lid"),
        sender_alt=nev.jid(BOB),
        id="L1",
        timestamp_ms=1,
    )

    link, got = await received(client, event, count=2)

    assert link == IdentityLink(lid=f"{LID}@lid", pn=f"{BOB}@s.whatsapp.net")
    assert isinstance(got, MessageReceived) and got.message.chat_id == f"{BOB}@s.whatsapp.net"


async def test_our_own_message_to_a_lid_chat_reveals_the_recipients_number(client: NeonizeClient) -> None:
    event = nev.message_event(
        nev.wa(conversation="sent from the phone"),
        chat=nev.jid(LID, "lid"),
        sender=nev.jid("15559876543"),
        from_me=True,
        recipient_alt=nev.jid(BOB),
        id="L2",
        timestamp_ms=1,
    )

    link, got = await received(client, event, count=2)

    assert link == IdentityLink(lid=f"{LID}@lid", pn=f"{BOB}@s.whatsapp.net")
    assert isinstance(got, MessageReceived) and got.message.chat_id == f"{BOB}@s.whatsapp.net"


async def test_a_lid_without_its_number_stays_a_lid_chat_and_its_receipt_too(client: NeonizeClient) -> None:
    event = nev.message_event(
        nev.wa(conversation="lid only"),
        chat=nev.jid(LID, "lid"),
        sender=nev.jid(LID, "lid"),
        id="L3",
        timestamp_ms=1,
    )
    receipt = nev.receipt(
        "READ", chat=nev.jid(LID, "lid"), sender=nev.jid(LID, "lid"), ids=["OUT1"], timestamp_s=2
    )

    got, ack = await received(client, event, receipt)

    # The session maps both to the phone number once it knows the link (test_inbox_kinds).
    assert isinstance(got, MessageReceived) and got.message.chat_id == f"{LID}@lid"
    assert ack == Receipt(f"{LID}@lid", ("OUT1",), MessageStatus.READ, ack.timestamp)  # type: ignore[union-attr]


async def test_a_changed_picture_is_announced(client: NeonizeClient) -> None:
    proto = nev.lib().proto
    changed = proto.Picture(JID=nev.jid(ALICE), Author=nev.jid(ALICE), Timestamp=1_700_000_000, Remove=False)

    (got,) = await received(client, changed)

    assert got == PictureChanged(f"{ALICE}@s.whatsapp.net")


async def test_a_receipt_with_both_forms_reveals_the_link_and_names_the_number(client: NeonizeClient) -> None:
    proto = nev.lib().proto
    source = proto.MessageSource(
        Chat=nev.jid(LID, "lid"),
        Sender=nev.jid(LID, "lid"),
        IsFromMe=False,
        IsGroup=False,
        SenderAlt=nev.jid(BOB),
        RecipientAlt=nev.no_jid(),
        BroadcastListOwner=nev.no_jid(),
    )
    ack = proto.Receipt(
        MessageSource=source,
        MessageIDs=["OUT2"],
        Timestamp=2,
        Type=proto.Receipt.ReceiptType.Value("DELIVERED"),
    )

    link, receipt = await received(client, ack, count=2)

    assert link == IdentityLink(lid=f"{LID}@lid", pn=f"{BOB}@s.whatsapp.net")
    assert isinstance(receipt, Receipt) and receipt.chat_id == f"{BOB}@s.whatsapp.net"
    assert (receipt.message_ids, receipt.status) == (("OUT2",), MessageStatus.DELIVERED)
