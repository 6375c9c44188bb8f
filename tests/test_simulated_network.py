"""The simulated network behaves like whatsmeow: QR rounds, pairing, resume, messages, receipts, drops."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest

from actors.clients.simulated import PAIRING_ALPHABET, SimulatedClient
from actors.clients.simulated.content import CHUNK_BYTES
from actors.ports import ClientOptions, OutgoingMedia, VoiceNote
from kernel.domain import Message, MessageStatus, MessageType, Reason
from kernel.errors import (
    AlreadyConnected,
    InvalidPhone,
    MediaNotAvailable,
    MediaTooLarge,
    NoQrShowing,
    NotOnWhatsApp,
    SessionNotConnected,
)
from kernel.events import (
    ClientEvent,
    Connected,
    Disconnected,
    HistoryChunk,
    LoggedOut,
    MessageReceived,
    Paired,
    PairingCode,
    QrCode,
    Receipt,
)
from persistence.migrate import sim_dsn
from persistence.sim_network import SimStore

pytestmark = pytest.mark.timeout(60)

E = TypeVar("E", bound=ClientEvent)

PHONE = "+15551230001"
DEVICE_JID = re.compile(r"^15551230001:([1-9]|[1-9][0-9])@s\.whatsapp\.net$")
MESSAGE_ID = re.compile(r"^3EB0[0-9A-F]{16}$")
# Long enough that a round never ends mid-test unless the test wants it to.
SLOW_QR = {"qr_first_s": 30.0, "qr_next_s": 10.0, "qr_codes": 6}
LIMIT = 16 * 1024 * 1024


class Recorder:
    """Consumes a client's events in the background, stamping each with the loop time."""

    def __init__(self, client: SimulatedClient) -> None:
        self.items: list[tuple[float, ClientEvent]] = []
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.task = self._loop.create_task(self._run(client))

    async def _run(self, client: SimulatedClient) -> None:
        async for event in client.events():
            self.items.append((self._loop.time(), event))
            self._changed.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for _, e in self.items if isinstance(e, kind)]

    def times(self, kind: type[ClientEvent]) -> list[float]:
        return [t for t, e in self.items if isinstance(e, kind)]

    @property
    def events(self) -> list[ClientEvent]:
        return [e for _, e in self.items]

    async def wait_for(self, kind: type[E], count: int = 1, timeout: float = 3.0) -> list[E]:
        """The first `count` events of `kind`; fails after `timeout` seconds with what did arrive."""
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(kind)[:count]

    async def quiet_for(self, seconds: float) -> list[ClientEvent]:
        """The events that arrive during the next `seconds`."""
        before = len(self.items)
        await asyncio.sleep(seconds)
        return [e for _, e in self.items[before:]]


Factory = Callable[..., Awaitable[tuple[SimulatedClient, Recorder]]]


@pytest.fixture
async def make(database_url: str) -> AsyncIterator[Factory]:
    """Builds connected simulated clients (each with a Recorder) and stops them all afterwards."""
    made: list[tuple[SimulatedClient, Recorder]] = []

    async def factory(
        device_jid: str | None = None, session_id: str | None = None, connect: bool = True, **timing: Any
    ) -> tuple[SimulatedClient, Recorder]:
        options = ClientOptions(
            session_id=session_id or str(uuid.uuid4()),
            device_jid=device_jid,
            auth_dsn=sim_dsn(database_url),
            **(timing or SLOW_QR),
        )
        client = SimulatedClient(options, SimStore(options.auth_dsn, options.session_id))
        recorder = Recorder(client)
        made.append((client, recorder))
        if connect:
            await client.connect()
        return client, recorder

    yield factory
    for client, recorder in made:
        await asyncio.wait_for(client.stop(), 5)
        await asyncio.wait_for(recorder.task, 5)


async def paired(make: Factory, name: str | None = "Alice") -> tuple[SimulatedClient, Recorder, str]:
    """A client paired through its QR, with the pairing-time history already received."""
    client, rec = await make()
    await rec.wait_for(QrCode)
    jid = await client.scan(PHONE, name)
    await rec.wait_for(HistoryChunk, 2)
    return client, rec, jid


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# ------------------------------------------------------------------------------------------ pairing


async def test_qr_codes_rotate_on_schedule_then_the_network_goes_silent(make: Factory) -> None:
    client, rec = await make(qr_first_s=0.4, qr_next_s=0.2, qr_codes=6)
    start = asyncio.get_running_loop().time()
    await rec.wait_for(QrCode, 6, timeout=10)
    after = await rec.quiet_for(0.8)  # the last code expired at 1.4 s; nothing follows it

    codes = rec.of(QrCode)
    assert len(codes) == 6 and len({c.code for c in codes}) == 6
    assert after == []
    for qr in codes:
        ref, *keys = qr.code.split(",")
        assert ref.startswith("2@") and len(ref) > 40 and len(keys) == 3
        assert keys == codes[0].code.split(",")[1:]  # one device's keys, a fresh ref per code
    # Each code replaces the previous one when that one expires: never sooner (timers fire late under
    # load, never early), and within a generous bound. The expiries follow the schedule exactly.
    wall = time.time() - asyncio.get_running_loop().time()
    arrivals = [wall + t for t in rec.times(QrCode)]
    expiries = [qr.expires_at.timestamp() for qr in codes]
    late = [arrival - expired for expired, arrival in zip(expiries, arrivals[1:], strict=False)]
    assert all(-0.01 <= lag < 3.0 for lag in late), late
    validity = [expiry - expiries[0] for expiry in expiries]
    schedule = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert all(abs(got - want) < 0.02 for got, want in zip(validity, schedule, strict=True)), validity
    assert arrivals[0] - wall - start < 3.0

    with pytest.raises(NoQrShowing):
        await client.scan(PHONE, "Alice")
    with pytest.raises(SessionNotConnected):
        await client.request_pairing_code(PHONE)


async def test_pairing_code_is_whatsmeow_shaped_and_only_its_phone_can_enter_it(make: Factory) -> None:
    client, rec = await make()
    await rec.wait_for(QrCode)
    code = await client.request_pairing_code("+1 (555) 123-0001")
    assert len(code) == 8 and set(code) <= set(PAIRING_ALPHABET)
    assert (await rec.wait_for(PairingCode)) == [PairingCode(code, PHONE)]

    with pytest.raises(InvalidPhone):
        await client.scan("+15559990001", "Mallory")
    jid = await client.scan(PHONE, "Alice")
    assert DEVICE_JID.match(jid)
    assert (await rec.wait_for(Paired))[0].device_jid == jid
    with pytest.raises(AlreadyConnected):
        await client.request_pairing_code(PHONE)


async def test_scan_without_a_qr_showing_is_refused(make: Factory) -> None:
    idle, _ = await make(connect=False)
    with pytest.raises(NoQrShowing):
        await idle.scan(PHONE, "Alice")
    client, _, jid = await paired(make)
    with pytest.raises(NoQrShowing):
        await client.scan(PHONE, "Alice")
    resuming, rec = await make(device_jid=jid)
    with pytest.raises(NoQrShowing):
        await resuming.scan(PHONE, "Alice")
    await rec.wait_for(Connected)


async def test_pairing_emits_paired_connected_then_history(make: Factory, database_url: str) -> None:
    client, rec = await make()
    await rec.wait_for(QrCode)
    jid = await client.scan(PHONE, "Alice")
    chunks = await rec.wait_for(HistoryChunk, 2)

    after_qr = [e for e in rec.events if not isinstance(e, QrCode)]
    assert after_qr[:2] == [Paired(jid, PHONE, "Alice"), Connected(push_name="Alice")]
    assert after_qr[2:] == chunks
    assert DEVICE_JID.match(jid)
    rows = await query(database_url, "SELECT jid, session_id, phone, push_name FROM wa_sim.device")
    assert [(r["jid"], str(r["session_id"]), r["phone"], r["push_name"]) for r in rows] == [
        (jid, client.session_id, PHONE, "Alice")
    ]

    conversations = [c for chunk in chunks for c in chunk.conversations]
    assert len(conversations) == 3 and all(len(c.messages) == 4 for c in conversations)
    assert {c.is_group for c in conversations} == {True, False}
    assert all(c.name for c in conversations) and any(c.unread_count > 0 for c in conversations)
    messages = [m for c in conversations for m in c.messages]
    assert {m.from_me for m in messages} == {True, False}
    assert all(m.timestamp < datetime.now(UTC) for m in messages)
    assert all(m.sender == "15551230001@s.whatsapp.net" for m in messages if m.from_me)
    for conv in conversations:
        times = [m.timestamp for m in conv.messages]
        assert times == sorted(times) and all(m.chat_id == conv.chat_id for m in conv.messages)
        incoming = [m for m in conv.messages if not m.from_me]
        assert all(m.sender_name and m.sender != conv.chat_id for m in incoming if conv.is_group)
        assert conv.unread_count <= len(incoming)


async def test_a_restarted_process_resumes_the_paired_device_without_a_qr(make: Factory) -> None:
    first, _, jid = await paired(make)
    sid = first.session_id
    await first.stop()

    again, rec = await make(device_jid=jid, session_id=sid)
    connected = await rec.wait_for(Connected, timeout=1)
    assert connected == [Connected(push_name="Alice")]
    assert rec.of(QrCode) == [] and rec.of(Paired) == []
    assert (await again.send_text("+15557770001", "back")).id


async def test_after_the_phone_unlinks_resuming_is_logged_out(make: Factory, database_url: str) -> None:
    client, rec, jid = await paired(make)
    await client.unlink()
    assert (await rec.wait_for(LoggedOut)) == [LoggedOut(Reason.LOGGED_OUT)]
    assert await query(database_url, "SELECT jid FROM wa_sim.device") == []
    with pytest.raises(SessionNotConnected):
        await client.send_text("+15557770001", "still there?")

    again, rec2 = await make(device_jid=jid, session_id=client.session_id)
    assert (await rec2.wait_for(LoggedOut)) == [LoggedOut(Reason.LOGGED_OUT)]
    assert rec2.of(Connected) == []
    with pytest.raises(SessionNotConnected):
        await again.history(1, 1)


# ------------------------------------------------------------------------------------------ messages


async def test_incoming_text_and_media_with_downloads(make: Factory) -> None:
    client, rec, _ = await paired(make)
    text = await client.incoming("+15557770001", "hello bridge", "Bob", None)
    image = await client.incoming(
        "15557770001@s.whatsapp.net", "look", "Bob", {"type": "image", "mimetype": "image/jpeg", "size": 5000}
    )
    doc = await client.incoming(
        "+15557770001",
        None,
        "Bob",
        {"type": "document", "mimetype": "application/pdf", "fileName": "q3.pdf", "size": 777},
    )
    note = await client.incoming("+15557770001", None, "Bob", {"type": "audio", "size": 3000})
    group = await client.incoming("120363012345678901@g.us", "hi all", "Carol", None)

    received = await rec.wait_for(MessageReceived, 5)
    assert [r.message for r in received] == [text, image, doc, note, group]
    assert received[0].chat_name == "Bob" and received[4].chat_name is None
    assert all(MESSAGE_ID.match(m.id) for m in (text, image, doc, note, group))
    assert text.chat_id == text.sender == "15557770001@s.whatsapp.net"
    assert (text.type, text.text, text.sender_name, text.from_me) == (
        MessageType.TEXT,
        "hello bridge",
        "Bob",
        False,
    )
    assert abs((datetime.now(UTC) - text.timestamp).total_seconds()) < 2
    assert group.chat_id == "120363012345678901@g.us" and group.sender.endswith("@s.whatsapp.net")

    assert image.type is MessageType.IMAGE and image.media is not None and image.media.size == 5000
    assert doc.media is not None and (doc.media.file_name, doc.media.mimetype) == (
        "q3.pdf",
        "application/pdf",
    )
    assert note.media is not None and note.media.ptt and note.media.mimetype == "audio/ogg; codecs=opus"
    jpeg = await download(client, image)
    assert len(jpeg) == 5000 and jpeg.startswith(b"\xff\xd8\xff") and jpeg == await download(client, image)
    pdf = await download(client, doc)
    assert len(pdf) == 777 and pdf.startswith(b"%PDF-")
    ogg = await download(client, note)
    assert len(ogg) == 3000 and ogg.startswith(b"OggS") and ogg[28:36] == b"OpusHead"
    with pytest.raises(MediaNotAvailable):
        await client.download_media(text, LIMIT)
    with pytest.raises(MediaTooLarge):
        await client.download_media(image, 4999)


async def download(client: SimulatedClient, message: Message) -> bytes:
    body = await client.download_media(message, LIMIT)
    data = b"".join([chunk async for chunk in body.chunks])
    assert len(data) == body.size
    return data


async def test_a_large_file_streams_in_bounded_chunks_and_always_the_same_bytes(make: Factory) -> None:
    client, _rec, _ = await paired(make)
    size = 100 * 1024 * 1024
    spec = {"type": "document", "mimetype": "application/zip", "size": size}
    big = await client.incoming("+15551230009", None, None, spec)
    digests = []
    for _ in range(2):
        body = await client.download_media(big, size)
        digest, total, largest = hashlib.sha256(), 0, 0
        async for chunk in body.chunks:
            digest.update(chunk)
            total, largest = total + len(chunk), max(largest, len(chunk))
        assert total == body.size == size and largest <= CHUNK_BYTES
        digests.append(digest.hexdigest())
    assert digests[0] == digests[1]


async def test_history_on_demand_arrives_as_one_more_chunk(make: Factory) -> None:
    client, rec, _ = await paired(make)
    chunk = await client.history(chats=2, messages_per_chat=5)
    assert (await rec.wait_for(HistoryChunk, 3))[2] == chunk
    assert [len(c.messages) for c in chunk.conversations] == [5, 5]


async def test_sends_are_recorded_and_receipts_follow_in_order(make: Factory) -> None:
    client, rec, _ = await paired(make)
    quoted = Message(
        "3EB0AAAAAAAAAAAAAAAA",
        "15557770001@s.whatsapp.net",
        "15557770001@s.whatsapp.net",
        False,
        datetime.now(UTC),
    )
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    text = await client.send_text("15557770001@s.whatsapp.net", "hi Bob", quoted=quoted)
    photo = b"\x89PNG\r\n\x1a\n" + bytes(200)
    media = await client.send_media(
        "120363012345678901@g.us", OutgoingMedia(photo, MessageType.IMAGE, "image/png", "p.png", "our trip")
    )
    voice = await client.send_voice_note(
        "15557770001@s.whatsapp.net", VoiceNote(b"OggS" + bytes(100), seconds=3)
    )
    assert len({text.id, media.id, voice.id}) == 3 and all(
        MESSAGE_ID.match(r.id) for r in (text, media, voice)
    )
    assert abs((datetime.now(UTC) - text.timestamp).total_seconds()) < 2

    on_network = await client.sent()
    assert [(s.message_id, s.to, s.type) for s in on_network] == [
        (text.id, "15557770001@s.whatsapp.net", MessageType.TEXT),
        (media.id, "120363012345678901@g.us", MessageType.IMAGE),
        (voice.id, "15557770001@s.whatsapp.net", MessageType.AUDIO),
    ]
    t, m, v = on_network
    assert (t.text, t.quoted_id, t.data) == ("hi Bob", quoted.id, None)
    assert (m.mimetype, m.size, m.file_name, m.text, m.data, m.ptt) == (
        "image/png",
        208,
        "p.png",
        "our trip",
        photo,
        False,
    )
    assert (v.mimetype, v.ptt, v.seconds, v.size) == ("audio/ogg; codecs=opus", True, 3, 104)

    receipts = await rec.wait_for(Receipt, 7)
    by_message = {
        r.id: [x.status for x in receipts if x.message_ids == (r.id,)] for r in (text, media, voice)
    }
    assert by_message == {
        text.id: [MessageStatus.DELIVERED, MessageStatus.READ],
        media.id: [MessageStatus.DELIVERED, MessageStatus.READ],
        voice.id: [MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED],
    }
    assert {r.chat_id for r in receipts if r.message_ids == (media.id,)} == {"120363012345678901@g.us"}
    first = [t for t, e in rec.items if isinstance(e, Receipt) and e.message_ids == (text.id,)]
    # Delivered after 0.1 s, read after 0.3 s (never sooner; later under load, generously bounded).
    assert 0.1 - 0.01 <= first[0] - sent_at < first[1] - sent_at < 0.3 + 5.0, first
    assert first[1] - sent_at >= 0.3 - 0.01, first


async def test_a_number_ending_in_0000_is_not_on_whatsapp(make: Factory) -> None:
    client, _, _ = await paired(make)
    with pytest.raises(NotOnWhatsApp):
        await client.send_text("15550000000@s.whatsapp.net", "anyone?")
    with pytest.raises(NotOnWhatsApp):
        await client.send_voice_note("4915112340000@s.whatsapp.net", VoiceNote(b"OggS", seconds=1))
    await client.send_text("120363000000000000@g.us", "groups always exist")
    assert [s.to for s in await client.sent()] == ["120363000000000000@g.us"]


# ------------------------------------------------------------------------------------------ connection


async def test_a_drop_reconnects_by_itself_and_delivers_what_arrived_meanwhile(make: Factory) -> None:
    client, rec, _ = await paired(make)
    await client.drop()
    assert (await rec.wait_for(Disconnected)) == [Disconnected(Reason.NETWORK, retrying=True)]
    with pytest.raises(SessionNotConnected):
        await client.send_text("+15557770001", "are you there?")
    late = await client.incoming("+15557770001", "sent while you were away", "Bob", None)

    await rec.wait_for(Connected, 2, timeout=2)
    assert (await rec.wait_for(MessageReceived))[0].message == late
    down, up = rec.times(Disconnected)[0], rec.times(Connected)[1]
    assert 0.2 < up - down < 1.0
    assert rec.times(MessageReceived)[0] >= up
    await client.send_text("+15557770001", "back online")


async def test_a_hung_reconnect_never_completes(make: Factory) -> None:
    client, rec, _ = await paired(make)
    await client.drop(hang_reconnect=True)
    await rec.wait_for(Disconnected)
    assert not [e for e in await rec.quiet_for(1.2) if isinstance(e, Connected)]
    assert len(rec.of(Connected)) == 1
    with pytest.raises(SessionNotConnected):
        await client.send_text("+15557770001", "hello?")
    await asyncio.wait_for(client.stop(), 2)
    await asyncio.wait_for(rec.task, 2)


async def test_logout_deletes_the_device_and_what_it_sent_without_an_event(
    make: Factory, database_url: str
) -> None:
    client, rec, _ = await paired(make)
    await client.send_text("+15557770001", "bye")
    await client.logout()
    assert not [e for e in await rec.quiet_for(0.5) if isinstance(e, LoggedOut | Receipt)]
    assert await query(database_url, "SELECT jid FROM wa_sim.device") == []
    assert await query(database_url, "SELECT message_id FROM wa_sim.sent") == []
    with pytest.raises(SessionNotConnected):
        await client.send_text("+15557770001", "one more")


async def test_connect_twice_fails_and_stop_cancels_every_background_task(make: Factory) -> None:
    client, rec, _ = await paired(make)
    with pytest.raises(AlreadyConnected):
        await client.connect()
    await client.send_text("+15557770001", "receipts pending")
    await client.drop()  # a reconnect pending too
    await client.stop()
    await client.stop()
    await asyncio.wait_for(rec.task, 2)
    sid = client.session_id
    assert [t.get_name() for t in asyncio.all_tasks() if sid in t.get_name()] == []


async def test_one_database_connection_at_most_and_reopened_when_lost(
    make: Factory, database_url: str
) -> None:
    client, _, _ = await paired(make)
    app = f"wa_sim {client.session_id}"
    count = "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1"
    await asyncio.gather(*(client.send_text("+15557770001", f"m{i}") for i in range(5)), client.sent())
    assert (await query(database_url, count, app))[0]["n"] == 1

    await query(
        database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        app,
    )
    assert len(await client.sent()) == 5
    await client.stop()
    await asyncio.sleep(0.1)
    assert (await query(database_url, count, app))[0]["n"] == 0
    assert len(await client.sent()) == 5  # still readable after stop (GET /simulator/.../sent)
    assert (await query(database_url, count, app))[0]["n"] == 0


async def test_a_qr_code_says_when_it_expires(make: Factory) -> None:
    _, rec = await make(qr_first_s=5.0, qr_next_s=1.0, qr_codes=2)
    qr = (await rec.wait_for(QrCode))[0]
    assert timedelta(seconds=4) < qr.expires_at - datetime.now(UTC) <= timedelta(seconds=5)
