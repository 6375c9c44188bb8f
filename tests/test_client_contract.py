"""One contract for the `WhatsAppClient` port, run over every adapter in `ADAPTERS`.

Two groups of tests:
- offline: hold for any adapter on a machine with no route to WhatsApp (errors before `connect`,
  `stop`, conformance, resuming a device whose credentials are gone: checked in the store, no dial);
- network: need the adapter's network to be reachable, so they run over `REACHABLE` only (the
  simulated network always is; real WhatsApp is not from this machine or CI).
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from actors.ports import ClientOptions, OutgoingMedia, PictureInfo, VoiceNote, WhatsAppClient
from kernel.domain import ContactCard, Location, Media, Message, MessageType, NumberCheck, Poll, Reason
from kernel.errors import (
    GroupNotFound,
    InvalidInput,
    MediaNotAvailable,
    NotGroupAdmin,
    NotOnWhatsApp,
    NotOwnMessage,
    SessionNotConnected,
    WaError,
)
from kernel.events import (
    ChatRead,
    ClientEvent,
    Connected,
    Disconnected,
    GroupChanged,
    LoggedOut,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PairingCode,
    Presence,
    QrCode,
    ReactionChanged,
)
from kernel.groups import GroupAct, MemberChange, MemberOutcome
from kernel.message_kinds import content_from_json, vcard
from kernel.proxy import ProxySettings, parse_proxy
from persistence.migrate import auth_dsn, sim_dsn
from persistence.sim_network import SimStore
from tests.proxykit import closed_port, running_proxy

pytestmark = pytest.mark.timeout(60)

# An adapter factory: a new, unconnected client for one fresh session of the test database.
AdapterFactory = Callable[[str, str | None, ProxySettings | None], Awaitable[WhatsAppClient]]


async def simulated(
    database_url: str, device_jid: str | None, proxy: ProxySettings | None = None
) -> WhatsAppClient:
    from actors.clients.simulated import SimulatedClient

    options = ClientOptions(
        session_id=str(uuid.uuid4()),
        device_jid=device_jid,
        auth_dsn=sim_dsn(database_url),
        qr_first_s=2.0,
        qr_next_s=1.0,
        qr_codes=3,
        proxy=proxy,
    )
    return SimulatedClient(options, SimStore(options.auth_dsn, options.session_id))


async def neonize(
    database_url: str, device_jid: str | None, proxy: ProxySettings | None = None
) -> WhatsAppClient:
    from actors.clients.neonize import NeonizeClient

    options = ClientOptions(
        session_id=str(uuid.uuid4()), device_jid=device_jid, auth_dsn=auth_dsn(database_url), proxy=proxy
    )
    return NeonizeClient(options)


ADAPTERS: dict[str, AdapterFactory] = {"simulated": simulated, "neonize": neonize}
# Adapters whose network the tests can reach.
REACHABLE = frozenset({"simulated"})

PORT_METHODS = (
    "connect",
    "events",
    "request_pairing_code",
    "send_text",
    "send_media",
    "send_voice_note",
    "send_location",
    "send_contact",
    "send_poll",
    "check_numbers",
    "contact_info",
    "set_blocked",
    "groups",
    "group_info",
    "create_group",
    "change_members",
    "group_invite_link",
    "reject_call",
    "download_media",
    "mark_read",
    "send_reaction",
    "edit_message",
    "revoke_message",
    "send_chat_presence",
    "profile_picture",
    "download_picture",
    "logout",
    "stop",
)
PAIRING_ALPHABET = set("123456789ABCDEFGHJKLMNPQRSTVWXYZ")
CHAT = "15557770001@s.whatsapp.net"
GROUP = "120363012345678901@g.us"
GONE_DEVICE = "15557770002:7@s.whatsapp.net"
LIMIT = 16 * 1024 * 1024


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(adapter: str, database_url: str) -> AsyncIterator[Callable[..., Awaitable[WhatsAppClient]]]:
    """Builds clients of the adapter under test and stops every one afterwards."""
    made: list[WhatsAppClient] = []

    async def factory(device_jid: str | None = None, proxy: ProxySettings | None = None) -> WhatsAppClient:
        client = await ADAPTERS[adapter](database_url, device_jid, proxy)
        made.append(client)
        return client

    yield factory
    for client in made:
        await asyncio.wait_for(client.stop(), 10)


@pytest.fixture
async def client(make: Callable[..., Awaitable[WhatsAppClient]]) -> WhatsAppClient:
    """A new client, not connected."""
    return await make()


# Network tests run over the reachable adapters only (parametrizing `adapter` overrides its fixture).
online = pytest.mark.parametrize("adapter", sorted(REACHABLE))


async def next_event(events: AsyncIterator[ClientEvent], timeout: float = 5.0) -> ClientEvent:
    """The next event, within `timeout` seconds."""
    return await asyncio.wait_for(anext(events), timeout)


def _message(media: Media | None = None) -> Message:
    return Message("3EB0000000000000000A", CHAT, CHAT, False, datetime.now(UTC), media=media)


# ------------------------------------------------------------------------------------------ offline


async def test_adapter_conforms_to_the_port(client: WhatsAppClient) -> None:
    for name in PORT_METHODS:
        port, impl = getattr(WhatsAppClient, name), getattr(type(client), name)
        if name == "events":
            assert inspect.isasyncgenfunction(impl) or not inspect.iscoroutinefunction(impl), name
        else:
            assert inspect.iscoroutinefunction(impl), name
        want = [(p.name, p.kind) for p in inspect.signature(port).parameters.values()]
        got = [(p.name, p.kind) for p in inspect.signature(impl).parameters.values()]
        assert got[: len(want)] == want, name
        extra = list(inspect.signature(impl).parameters.values())[len(want) :]
        assert all(p.default is not inspect.Parameter.empty for p in extra), name


async def test_sends_before_connect_raise_session_not_connected(client: WhatsAppClient) -> None:
    with pytest.raises(SessionNotConnected):
        await client.send_text(CHAT, "hello")
    with pytest.raises(SessionNotConnected):
        await client.send_media(
            CHAT, OutgoingMedia(b"%PDF-1.7\n", MessageType.DOCUMENT, "application/pdf", "a.pdf")
        )
    with pytest.raises(SessionNotConnected):
        await client.send_voice_note(CHAT, VoiceNote(b"OggS", seconds=1))
    with pytest.raises(SessionNotConnected):
        await client.mark_read(CHAT, [_message()])
    mine = replace(_message(), from_me=True)
    with pytest.raises(SessionNotConnected):
        await client.send_reaction(_message(), "👍")
    with pytest.raises(SessionNotConnected):
        await client.edit_message(mine, "fixed")
    with pytest.raises(SessionNotConnected):
        await client.revoke_message(mine)
    with pytest.raises(SessionNotConnected):
        await client.send_chat_presence(CHAT, "composing")
    with pytest.raises(SessionNotConnected):
        await client.send_location(CHAT, Location(52.37, 4.89))
    with pytest.raises(SessionNotConnected):
        await client.send_contact(CHAT, ContactCard("Ann", vcard("Ann", "15550001234")))
    with pytest.raises(SessionNotConnected):
        await client.send_poll(CHAT, Poll("Lunch?", ("Pizza", "Sushi")))
    with pytest.raises(SessionNotConnected):
        await client.check_numbers(["+15557770001"])
    with pytest.raises(SessionNotConnected):
        await client.contact_info(CHAT)
    with pytest.raises(SessionNotConnected):
        await client.set_blocked(CHAT, True)
    with pytest.raises(SessionNotConnected):
        await client.reject_call(CHAT, "CALL1")
    with pytest.raises(SessionNotConnected):
        await client.groups()
    with pytest.raises(SessionNotConnected):
        await client.group_info(GROUP)
    with pytest.raises(SessionNotConnected):
        await client.create_group("Family", [CHAT])
    with pytest.raises(SessionNotConnected):
        await client.change_members(GROUP, [CHAT], MemberChange.ADD)
    with pytest.raises(SessionNotConnected):
        await client.group_invite_link(GROUP, reset=True)


async def test_only_own_messages_can_be_edited_or_revoked(client: WhatsAppClient) -> None:
    with pytest.raises(NotOwnMessage):
        await client.edit_message(_message(), "not mine")
    with pytest.raises(NotOwnMessage):
        await client.revoke_message(_message())


async def test_pairing_code_before_connect_fails_with_our_error(client: WhatsAppClient) -> None:
    with pytest.raises(WaError):
        await client.request_pairing_code("+15551230001")


async def test_a_message_without_media_cannot_be_downloaded(client: WhatsAppClient) -> None:
    with pytest.raises(MediaNotAvailable):
        await client.download_media(_message(), LIMIT)
    with pytest.raises(MediaNotAvailable):
        await client.download_media(_message(Media("image/jpeg", size=10)), LIMIT)  # media but no ref


async def test_stop_is_idempotent_and_ends_events(client: WhatsAppClient) -> None:
    seen: list[ClientEvent] = []

    async def consume() -> None:
        seen.extend([event async for event in client.events()])

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert not consumer.done()
    await asyncio.wait_for(client.stop(), 5)
    await asyncio.wait_for(client.stop(), 5)
    await asyncio.wait_for(consumer, 2)
    assert seen == []
    assert await asyncio.wait_for(_drain(client.events()), 2) == []


async def test_a_stopped_client_cannot_connect_again(client: WhatsAppClient) -> None:
    await client.stop()
    with pytest.raises(WaError):
        await client.connect()


async def test_resuming_a_device_whose_credentials_are_gone_is_logged_out(
    make: Callable[..., Awaitable[WhatsAppClient]],
) -> None:
    client = await make(GONE_DEVICE)
    events = client.events()
    await client.connect()
    assert await next_event(events) == LoggedOut(Reason.LOGGED_OUT)
    with pytest.raises(SessionNotConnected):
        await client.send_text(CHAT, "hello")


# A number's proxy: the dial goes to it first (a local one here: no route to WhatsApp is needed).


async def test_a_dial_through_a_proxy_nothing_listens_on_is_proxy_unreachable(
    make: Callable[..., Awaitable[WhatsAppClient]],
) -> None:
    client = await make(proxy=ProxySettings("socks5", "127.0.0.1", closed_port(), "u", "pw-contract"))
    events = client.events()
    await client.connect()
    assert await next_event(events, 30) == Disconnected(Reason.PROXY_UNREACHABLE, retrying=False)
    with pytest.raises(SessionNotConnected):
        await client.send_text(CHAT, "hello")


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_a_proxy_that_refuses_the_credentials_is_proxy_auth_failed(
    make: Callable[..., Awaitable[WhatsAppClient]], scheme: str
) -> None:
    with running_proxy(scheme, "alice", "right-one") as proxy:
        client = await make(proxy=parse_proxy(proxy.url(password="wrong-one")))
        events = client.events()
        await client.connect()
        assert await next_event(events, 30) == Disconnected(Reason.PROXY_AUTH_FAILED, retrying=False)
        assert proxy.auth_failures == 1 and proxy.targets == []


@online
async def test_a_working_proxy_lets_the_dial_through(make: Callable[..., Awaitable[WhatsAppClient]]) -> None:
    with running_proxy("socks5", "alice", "right-one") as proxy:
        client = await make(proxy=parse_proxy(proxy.url()))
        events = client.events()
        await client.connect()
        assert isinstance(await next_event(events), QrCode)
        assert proxy.connections == 1 and proxy.auth_failures == 0


# ------------------------------------------------------------------------------------------ network


@online
async def test_an_unpaired_connect_shows_a_qr_code(client: WhatsAppClient) -> None:
    events = client.events()
    await client.connect()
    qr = await next_event(events)
    assert isinstance(qr, QrCode)
    assert qr.code.startswith("2@") and qr.code.count(",") == 3
    assert qr.expires_at > datetime.now(UTC)


@online
async def test_a_pairing_code_while_pairing(client: WhatsAppClient) -> None:
    events = client.events()
    await client.connect()
    assert isinstance(await next_event(events), QrCode)
    code = await client.request_pairing_code("+15551230001")
    assert len(code) == 8 and set(code) <= PAIRING_ALPHABET
    while not isinstance(event := await next_event(events), PairingCode):
        assert isinstance(event, QrCode)
    assert event == PairingCode(code, "+15551230001")


@online
async def test_connect_twice_fails_with_our_error(client: WhatsAppClient) -> None:
    await client.connect()
    with pytest.raises(WaError):
        await client.connect()


@online
async def test_stop_while_connecting_ends_events(client: WhatsAppClient) -> None:
    events = client.events()
    await client.connect()
    assert isinstance(await next_event(events), QrCode)
    await asyncio.wait_for(client.stop(), 5)
    assert all(isinstance(e, QrCode) for e in await asyncio.wait_for(_drain(events), 2))
    with pytest.raises(SessionNotConnected):
        await client.send_text(CHAT, "hello")


async def _connected(client: WhatsAppClient) -> AsyncIterator[ClientEvent]:
    """Pair `client` through its QR (the simulated phone scans it); its events, from Connected on."""
    events = client.events()
    await client.connect()
    assert isinstance(await next_event(events), QrCode)
    await client.scan("+15557770009", "Me")  # type: ignore[attr-defined]
    while not isinstance(await next_event(events), Connected):
        pass
    return events


@online
async def test_our_reactions_edits_revokes_and_typing_reach_the_network(client: WhatsAppClient) -> None:
    await _connected(client)
    theirs = _message()
    mine = replace(_message(), id="3EB0000000000000000B", from_me=True)

    reacted = await client.send_reaction(theirs, "👍")
    unreacted = await client.send_reaction(theirs, "")
    edited = await client.edit_message(mine, "fixed")
    revoked = await client.revoke_message(mine)
    await client.send_chat_presence(CHAT, "recording")
    with pytest.raises(InvalidInput):
        await client.send_chat_presence(CHAT, "dancing")

    assert len({reacted.id, unreacted.id, edited.id, revoked.id}) == 4
    sent = await client.sent()  # type: ignore[attr-defined]
    got = [(str(s.type), s.message_id, s.to, s.text) for s in sent]
    assert got[:4] == [
        ("reaction", theirs.id, CHAT, "👍"),
        ("reaction", theirs.id, CHAT, ""),
        ("edit", mine.id, CHAT, "fixed"),
        ("revoke", mine.id, CHAT, None),
    ]
    assert (str(sent[4].type), sent[4].to, sent[4].text) == ("presence", CHAT, "recording")


@online
async def test_what_the_contact_and_the_phone_do_arrives_as_events(client: WhatsAppClient) -> None:
    events = await _connected(client)
    sim: Any = client

    await sim.react(CHAT, "M1", "😂")
    await sim.edit(CHAT, "M2", "new text")
    await sim.revoke(CHAT, "M3")
    await sim.read(CHAT)
    await sim.presence(CHAT, "composing")
    got = [await next_event(events) for _ in range(5)]

    assert isinstance(got[0], ReactionChanged) and (got[0].message_id, got[0].reaction.emoji) == ("M1", "😂")
    assert got[0].reaction.sender == CHAT
    assert isinstance(got[1], MessageEdited) and (got[1].message_id, got[1].text) == ("M2", "new text")
    assert isinstance(got[2], MessageRevoked) and got[2].message_id == "M3"
    assert isinstance(got[3], ChatRead) and got[3].chat_id == CHAT and got[3].up_to is not None
    assert got[4] == Presence(CHAT, "composing")


async def _drain(events: AsyncIterator[ClientEvent]) -> list[ClientEvent]:
    return [event async for event in events]


# ------------------------------------------------------------------------------------------ message kinds

FROM = "15557770003"
VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Carol\nTEL;type=CELL;waid=15557770004:+15557770004\nEND:VCARD"
# Each kind as the simulated network's control makes it and as WhatsApp sends it (waE2E fields), and the
# domain fields every adapter must produce from it.
KINDS: dict[str, tuple[dict[str, Any], Callable[[Any], dict[str, Any]], dict[str, Any]]] = {
    "location": (
        {"location": {"latitude": 48.8584, "longitude": 2.2945, "name": "Eiffel Tower"}},
        lambda e2e: {
            "locationMessage": e2e.LocationMessage(
                degreesLatitude=48.8584, degreesLongitude=2.2945, name="Eiffel Tower"
            )
        },
        {
            "type": MessageType.LOCATION,
            "location": Location(48.8584, 2.2945, "Eiffel Tower"),
            "summary": "📍 Eiffel Tower",
        },
    ),
    "live location": (
        {"location": {"latitude": 1.5, "longitude": -2.25, "live": True}},
        lambda e2e: {
            "liveLocationMessage": e2e.LiveLocationMessage(degreesLatitude=1.5, degreesLongitude=-2.25)
        },
        {
            "type": MessageType.LOCATION,
            "location": Location(1.5, -2.25, live=True),
            "summary": "📍 Live location",
        },
    ),
    "contact card": (
        {"contacts": [{"displayName": "Carol", "vcard": VCARD}]},
        lambda e2e: {"contactMessage": e2e.ContactMessage(displayName="Carol", vcard=VCARD)},
        {"type": MessageType.CONTACT, "contacts": (ContactCard("Carol", VCARD),), "summary": "👤 Carol"},
    ),
    "poll": (
        {"poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"], "selectable": 1}},
        lambda e2e: {
            "pollCreationMessageV3": e2e.PollCreationMessage(
                name="Lunch?",
                options=[e2e.PollCreationMessage.Option(optionName=o) for o in ("Pizza", "Sushi")],
                selectableOptionsCount=1,
            )
        },
        {"type": MessageType.POLL, "poll": Poll("Lunch?", ("Pizza", "Sushi"), 1), "summary": "📊 Lunch?"},
    ),
    "sticker": (
        {"media": {"type": "sticker", "mimetype": "image/webp", "size": 2048}},
        lambda e2e: {"stickerMessage": e2e.StickerMessage(mimetype="image/webp", fileLength=2048)},
        {"type": MessageType.STICKER, "summary": "Sticker", "downloadable": True},
    ),
    "video note": (
        {"media": {"type": "video", "mimetype": "video/mp4", "size": 400_000, "videoNote": True}},
        lambda e2e: {"ptvMessage": e2e.VideoMessage(mimetype="video/mp4", fileLength=400_000, seconds=4)},
        {"type": MessageType.VIDEO, "summary": "Video message", "video_note": True, "downloadable": True},
    ),
    "view once": (
        {
            "media": {"type": "image", "mimetype": "image/jpeg", "size": 4096},
            "text": "secret",
            "view_once": True,
        },
        lambda e2e: {
            "viewOnceMessageV2": e2e.FutureProofMessage(
                message=e2e.Message(
                    imageMessage=e2e.ImageMessage(mimetype="image/jpeg", caption="secret", fileLength=4096)
                )
            )
        },
        {"type": MessageType.IMAGE, "summary": "View once photo", "view_once": True, "text": None},
    ),
    "reply": (
        {"text": "agreed", "quoted_id": "3EB0QUOTED"},
        lambda e2e: {
            "extendedTextMessage": e2e.ExtendedTextMessage(
                text="agreed", contextInfo=e2e.ContextInfo(stanzaID="3EB0QUOTED")
            )
        },
        {"type": MessageType.TEXT, "text": "agreed", "quoted_id": "3EB0QUOTED", "summary": None},
    ),
}


async def _arrives(
    adapter: str, client: WhatsAppClient, control: dict[str, Any], wa: Callable[[Any], Any]
) -> Message:
    """Make one message arrive from FROM: through the simulated network's control, or as a real neonize
    MessageEv through neonize's dispatcher."""
    events = client.events()
    if adapter == "simulated":
        from actors.clients.simulated import SimulatedClient

        assert isinstance(client, SimulatedClient)
        await client.connect()
        assert isinstance(await next_event(events), QrCode)
        await client.scan("+15557770099")
        await client.incoming(f"+{FROM}", **control)
    else:
        from actors.clients.neonize import NeonizeClient
        from tests import neonize_events as nev

        assert isinstance(client, NeonizeClient)
        ev = nev.message_event(
            nev.wa(**wa(nev.lib().e2e)),
            chat=nev.jid(FROM),
            sender=nev.jid(FROM),
            id="3EB0KIND",
            timestamp_ms=1,
        )
        nev.dispatch(client, ev)
    while not isinstance(event := await next_event(events), MessageReceived):
        pass
    return event.message


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_every_message_kind_arrives_typed(adapter: str, client: WhatsAppClient, kind: str) -> None:
    control, wa, expected = KINDS[kind]

    got = await _arrives(adapter, client, control, wa)

    assert got.chat_id == f"{FROM}@s.whatsapp.net"
    assert got.type is expected["type"] and got.summary == expected["summary"]
    for name in ("location", "contacts", "poll", "text", "quoted_id"):
        if name in expected:
            assert getattr(got, name) == expected[name], name
    assert got.view_once == expected.get("view_once", False)
    assert (got.media is not None and got.media.video_note) == expected.get("video_note", False)
    # Only what the phone would let you open again can be downloaded (never a view-once media).
    assert (got.media_ref is not None) == expected.get("downloadable", False)


# ------------------------------------------------------------------------------ pictures, own media


async def test_pictures_need_the_connection(client: WhatsAppClient) -> None:
    with pytest.raises(SessionNotConnected):
        await client.profile_picture(CHAT, None)
    with pytest.raises(SessionNotConnected):
        await client.download_picture(PictureInfo("1", "https://pps.whatsapp.net/v/x.jpg?oe=7FFFFFFF"), LIMIT)


async def _paired_simulator(client: WhatsAppClient) -> Any:
    from actors.clients.simulated import SimulatedClient

    assert isinstance(client, SimulatedClient)
    events = client.events()
    await client.connect()
    assert isinstance(await next_event(events), QrCode)
    await client.scan("+15557770098")
    while not isinstance(await next_event(events), Connected):
        pass
    return client


@online
async def test_a_contacts_picture_is_fetched_then_unchanged_then_gone(client: WhatsAppClient) -> None:
    sim = await _paired_simulator(client)
    assert await client.profile_picture(CHAT, None) is None

    await sim.contact(CHAT, picture=True)
    picture = await client.profile_picture(CHAT, None)
    assert picture is not None and "oe=" in picture.url
    data = await client.download_picture(picture, LIMIT)
    same = await client.profile_picture(CHAT, picture.id)
    await sim.contact(CHAT, picture=False)

    assert data.startswith(b"\x89PNG")
    assert same == PictureInfo(picture.id, "")  # unchanged: no new link, as whatsmeow answers
    assert await client.profile_picture(CHAT, None) is None


@online
async def test_media_we_send_downloads_like_media_we_receive(client: WhatsAppClient) -> None:
    await _paired_simulator(client)
    data = b"%PDF-1.7\n" + bytes(range(256)) * 40

    sent = await client.send_media(
        CHAT, OutgoingMedia(data, MessageType.DOCUMENT, "application/pdf", "q.pdf")
    )
    body = await client.download_media(replace(_message(), media_ref=sent.media_ref), LIMIT)

    assert sent.media_ref is not None
    assert body.size == len(data)
    assert b"".join([chunk async for chunk in body.chunks]) == data


@online
async def test_locations_contact_cards_and_polls_reach_the_network_typed(client: WhatsAppClient) -> None:
    await _paired_simulator(client)
    place = Location(52.3731, 4.8922, name="Dam Square", address="Amsterdam")
    card = ContactCard("Ann Lee", vcard("Ann Lee", "15550001234"))
    poll = Poll("Lunch?", ("Pizza", "Sushi", "Salad"), selectable=0)

    ids = [
        (await client.send_location(CHAT, place)).id,
        (await client.send_contact(CHAT, card)).id,
        (await client.send_poll(CHAT, poll)).id,
    ]

    sent = [s for s in await client.sent() if s.message_id in ids]  # type: ignore[attr-defined]
    assert [(str(s.type), s.to) for s in sent] == [("location", CHAT), ("contact", CHAT), ("poll", CHAT)]
    assert [content_from_json(s.content) for s in sent] == [
        (place, (), None),
        (None, (card,), None),
        (None, (), poll),
    ]
    with pytest.raises(NotOnWhatsApp):
        await client.send_location("15557770000@s.whatsapp.net", place)


@online
async def test_which_numbers_are_on_whatsapp_in_the_order_asked(client: WhatsAppClient) -> None:
    await _paired_simulator(client)

    checks = await client.check_numbers(["+15557770000", "1 555 777 0001"])

    assert checks == [
        NumberCheck("+15557770000", False, None),
        NumberCheck("+15557770001", True, "15557770001@s.whatsapp.net"),
    ]


@online
async def test_a_contact_is_described_and_blocked_then_unblocked(client: WhatsAppClient) -> None:
    await _paired_simulator(client)

    before = await client.contact_info(CHAT)
    await client.set_blocked(CHAT, True)
    blocked = await client.contact_info(CHAT)
    await client.set_blocked(CHAT, False)
    after = await client.contact_info(CHAT)

    assert (before.jid, before.blocked, before.about) == (CHAT, False, "Hey there! I am using WhatsApp.")
    assert (blocked.blocked, after.blocked) == (True, False)
    with pytest.raises(NotOnWhatsApp):
        await client.contact_info("15557770000@s.whatsapp.net")


@online
async def test_a_groups_life_add_remove_invite_and_another_members_acts(client: WhatsAppClient) -> None:
    sim = await _paired_simulator(client)
    events = client.events()
    me, bob, carol = "15557770098@s.whatsapp.net", CHAT, "15557770003@s.whatsapp.net"

    made = await client.create_group("Family", [bob, "15557770000@s.whatsapp.net", "15557770403"])
    created = await next_event(events)
    added = await client.change_members(made.jid, [carol, bob, "15557770000"], MemberChange.ADD)
    link = await client.group_invite_link(made.jid)
    reset = await client.group_invite_link(made.jid, reset=True)
    removed = await client.change_members(made.jid, [bob, "15557770005"], MemberChange.REMOVE)
    renamed = await sim.group_event(GroupAct(made.jid, carol, subject="Family (new)", leave=(carol,)))
    listed = await client.groups()

    assert made.subject == "Family" and made.jid.endswith("@g.us")
    assert [(m.jid, m.admin, m.super_admin) for m in made.members] == [(me, True, True), (bob, False, False)]
    assert isinstance(created, GroupChanged) and (created.chat_id, created.subject) == (made.jid, "Family")
    assert added == [
        MemberOutcome(carol),
        MemberOutcome(bob, "already_in_group"),
        MemberOutcome("15557770000@s.whatsapp.net", "not_on_whatsapp"),
    ]
    assert link.startswith("https://chat.whatsapp.com/") and reset != link
    assert removed == [MemberOutcome(bob), MemberOutcome("15557770005@s.whatsapp.net", "not_in_group")]
    assert (renamed.by, renamed.subject, renamed.left) == (carol, "Family (new)", (carol,))
    assert [(g.jid, g.subject, [m.jid for m in g.members]) for g in listed] == [
        (made.jid, "Family (new)", [me])
    ]


@online
async def test_only_admins_change_a_group_and_strangers_groups_are_not_found(client: WhatsAppClient) -> None:
    sim = await _paired_simulator(client)
    alice = "15557770007@s.whatsapp.net"

    await sim.group_event(GroupAct(GROUP, alice, subject="Book club"))  # Alice adds this number to her group
    info = await client.group_info(GROUP)

    assert (info.subject, info.owner) == ("Book club", alice)
    with pytest.raises(NotGroupAdmin):
        await client.change_members(GROUP, [CHAT], MemberChange.ADD)
    with pytest.raises(NotGroupAdmin):
        await client.group_invite_link(GROUP)
    await sim.group_event(GroupAct(GROUP, alice, promote=("15557770098",)))
    assert (await client.group_invite_link(GROUP)).startswith("https://chat.whatsapp.com/")
    await sim.group_event(GroupAct(GROUP, alice, leave=("15557770098",)))  # Alice removes this number
    with pytest.raises(GroupNotFound):
        await client.group_info(GROUP)
    with pytest.raises(GroupNotFound):
        await client.group_info("120363000000000009@g.us")
