"""The neonize adapter against neonize 0.5.2 itself: real event protobufs through neonize's dispatcher, and
real `connect()` attempts that fail here (no route to WhatsApp) in subprocesses.

In this process no test calls into Go: the dispatcher only parses bytes, and the adapter's guards keep
every FFI call away from a client Go never registered (such a call would abort pytest). What does call
into Go (connect, stop, the device-row check) runs in a child process, judged by its output and exit code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from actors.clients.neonize import NeonizeClient, outgoing
from actors.ports import ClientOptions, OutgoingMedia, VoiceNote
from kernel.domain import Media, Message, MessageStatus, MessageType, Reason
from kernel.errors import (
    AlreadyConnected,
    ClientError,
    InvalidPhone,
    MediaTooLarge,
    SessionNotConnected,
)
from kernel.events import (
    ChatRead,
    ClientEvent,
    Connected,
    ContactName,
    Disconnected,
    HistoryChunk,
    IdentityLink,
    LoggedOut,
    MessageReceived,
    Paired,
    QrCode,
    Receipt,
)
from persistence.migrate import auth_dsn
from tests import neonize_events as nev
from tests.conftest import DeadEndProxy

ROOT = Path(__file__).resolve().parents[1]
UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"  # in-process clients never connect
EVENT_TIMEOUT_S = 5.0
CHILD_TIMEOUT_S = 90.0
ALICE, BOB = "15551230001", "15551230002"
GROUP = "120363012345678901"
LID = "123456789012345"


def options(device_jid: str | None = None, dsn: str = UNUSED_DSN) -> ClientOptions:
    return ClientOptions(session_id=str(uuid4()), device_jid=device_jid, auth_dsn=dsn)


@pytest.fixture
async def client() -> AsyncIterator[NeonizeClient]:
    c = NeonizeClient(options())
    try:
        yield c
    finally:
        await c.stop()


class Events:
    """Reads a client's event stream with a timeout per event."""

    def __init__(self, client: NeonizeClient) -> None:
        self._it = aiter(client.events())

    async def next(self) -> ClientEvent:
        return await asyncio.wait_for(anext(self._it), EVENT_TIMEOUT_S)


async def one(client: NeonizeClient, event: Any) -> ClientEvent:
    nev.dispatch(client, event)
    return await Events(client).next()


# ---------------------------------------------------------------------- incoming messages


async def test_one_to_one_text_gets_its_millisecond_timestamp(client: NeonizeClient) -> None:
    ev = nev.message_event(
        nev.wa(conversation="hello"),
        chat=nev.jid(ALICE),
        sender=nev.jid(ALICE),
        id="3EB0ABC",
        pushname="Alice",
        timestamp_ms=1_700_000_000_123,
    )

    got = await one(client, ev)

    assert got == MessageReceived(
        Message(
            id="3EB0ABC",
            chat_id=f"{ALICE}@s.whatsapp.net",
            sender=f"{ALICE}@s.whatsapp.net",
            from_me=False,
            timestamp=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
            type=MessageType.TEXT,
            text="hello",
            sender_name="Alice",
        ),
        chat_name="Alice",
    )


async def test_group_image_keeps_caption_media_and_reply_target(client: NeonizeClient) -> None:
    ev = nev.message_event(
        nev.image("look at this", quoted_id="3EB0QUOTED", participant=f"{ALICE}@s.whatsapp.net"),
        chat=nev.jid(GROUP, "g.us"),
        sender=nev.jid(BOB, device=12),
        group=True,
        id="3EB0IMG",
        pushname="Bob",
        timestamp_ms=1_700_000_100_000,
    )

    got = await one(client, ev)

    assert isinstance(got, MessageReceived)
    assert got.chat_name is None  # a group's name is not in the message
    msg = got.message
    assert (msg.chat_id, msg.sender, msg.sender_name) == (f"{GROUP}@g.us", f"{BOB}@s.whatsapp.net", "Bob")
    assert (msg.type, msg.text, msg.quoted_id) == (MessageType.IMAGE, "look at this", "3EB0QUOTED")
    assert msg.media == Media(mimetype="image/jpeg", size=48213)
    # The ref is the image sub-message alone, ready for download_any, without the reply context.
    assert msg.media_ref is not None and msg.media_ref["kind"] == "imageMessage"
    ref = nev.lib().e2e.Message.FromString(base64.b64decode(msg.media_ref["message"]))
    assert ref.imageMessage.directPath == "/o1/v/t62.7118-24/f1/m232/abc"
    assert ref.imageMessage.mediaKey == b"k" * 32
    assert not ref.imageMessage.HasField("contextInfo")


async def test_lid_sender_shows_the_phone_and_keeps_the_lid(client: NeonizeClient) -> None:
    events = Events(client)
    in_group = nev.message_event(
        nev.wa(conversation="from a lid"),
        chat=nev.jid(GROUP, "g.us"),
        sender=nev.jid(LID, "lid"),
        sender_alt=nev.jid(BOB),
        group=True,
        id="3EB0LID1",
        timestamp_ms=1_700_000_200_000,
    )
    direct = nev.message_event(
        nev.wa(extendedTextMessage=nev.lib().e2e.ExtendedTextMessage(text="dm from a lid")),
        chat=nev.jid(LID, "lid"),
        sender=nev.jid(LID, "lid"),
        sender_alt=nev.jid(BOB),
        id="3EB0LID2",
        timestamp_ms=1_700_000_201_000,
    )
    nev.dispatch(client, in_group)
    nev.dispatch(client, direct)

    link1, group_msg, link2, dm = [await events.next() for _ in range(4)]

    # Each event that names both forms tells the session they are one person (before the message).
    assert link1 == link2 == IdentityLink(lid=f"{LID}@lid", pn=f"{BOB}@s.whatsapp.net")
    assert isinstance(group_msg, MessageReceived) and isinstance(dm, MessageReceived)
    assert group_msg.message.sender == f"{BOB}@s.whatsapp.net"
    assert group_msg.message.sender_alt == f"{LID}@lid"
    assert group_msg.message.chat_id == f"{GROUP}@g.us"
    # A 1:1 chat addressed by lid is the same chat as the phone number's.
    assert (dm.message.chat_id, dm.message.sender) == (f"{BOB}@s.whatsapp.net", f"{BOB}@s.whatsapp.net")
    assert dm.message.text == "dm from a lid"


async def test_protocol_traffic_and_status_updates_are_not_chat_messages(client: NeonizeClient) -> None:
    e2e = nev.lib().e2e
    key_share = nev.wa(protocolMessage=e2e.ProtocolMessage(type=e2e.ProtocolMessage.APP_STATE_SYNC_KEY_SHARE))
    status = nev.message_event(
        nev.wa(conversation="my status"),
        chat=nev.jid("status", "broadcast"),
        sender=nev.jid(ALICE),
        id="S1",
        timestamp_ms=1,
    )
    real = nev.message_event(
        nev.wa(conversation="real"), chat=nev.jid(ALICE), sender=nev.jid(ALICE), id="R1", timestamp_ms=2
    )
    nev.dispatch(
        client,
        nev.message_event(key_share, chat=nev.jid(ALICE), sender=nev.jid(ALICE), id="P1", timestamp_ms=0),
    )
    nev.dispatch(client, status)
    nev.dispatch(client, real)

    got = await Events(client).next()

    assert isinstance(got, MessageReceived) and got.message.id == "R1"


async def test_voice_note_document_sticker_and_other(client: NeonizeClient) -> None:
    e2e = nev.lib().e2e
    events = Events(client)
    voice = nev.wa(
        audioMessage=e2e.AudioMessage(mimetype="audio/ogg; codecs=opus", seconds=7, PTT=True, fileLength=9000)
    )
    doc = nev.wa(
        documentWithCaptionMessage=e2e.FutureProofMessage(
            message=e2e.Message(
                documentMessage=e2e.DocumentMessage(
                    mimetype="application/pdf", fileName="q3.pdf", caption="numbers", fileLength=123456
                )
            )
        )
    )
    sticker = nev.wa(stickerMessage=e2e.StickerMessage(mimetype="image/webp", fileLength=2048))
    location = nev.wa(locationMessage=e2e.LocationMessage(degreesLatitude=52.5, degreesLongitude=13.4))
    for i, content in enumerate((voice, doc, sticker, location)):
        nev.dispatch(
            client,
            nev.message_event(
                content, chat=nev.jid(ALICE), sender=nev.jid(ALICE), id=f"M{i}", timestamp_ms=i
            ),
        )

    got_voice, got_doc, got_sticker, got_location = [await events.next() for _ in range(4)]

    assert isinstance(got_voice, MessageReceived) and isinstance(got_doc, MessageReceived)
    assert got_voice.message.type is MessageType.AUDIO
    assert got_voice.message.media == Media("audio/ogg; codecs=opus", size=9000, seconds=7, ptt=True)
    assert (got_doc.message.type, got_doc.message.text) == (MessageType.DOCUMENT, "numbers")
    assert got_doc.message.media == Media("application/pdf", file_name="q3.pdf", size=123456)
    assert isinstance(got_sticker, MessageReceived) and isinstance(got_location, MessageReceived)
    assert got_sticker.message.type is MessageType.STICKER
    assert got_sticker.message.media == Media("image/webp", size=2048)
    assert (got_location.message.type, got_location.message.text) == (MessageType.LOCATION, None)
    assert got_location.message.summary == "📍 Location"


# ---------------------------------------------------------------------- history, receipts, pairing, state


async def test_history_sync_chunk_becomes_conversations(client: NeonizeClient) -> None:
    own = "15559876543"
    nev.dispatch(client, nev.pair_success(own, 4))  # history only ever follows a pairing
    events = Events(client)
    assert isinstance(await events.next(), Paired)
    chunk = nev.history_sync(
        [
            {
                "ID": f"{ALICE}@s.whatsapp.net",
                "unreadCount": 2,
                "messages": [
                    nev.web_message(
                        nev.wa(conversation="hi"),
                        chat=f"{ALICE}@s.whatsapp.net",
                        id="H1",
                        timestamp_s=1_690_000_000,
                    ),
                    nev.web_message(
                        nev.wa(conversation="hello back"),
                        chat=f"{ALICE}@s.whatsapp.net",
                        id="H2",
                        timestamp_s=1_690_000_060,
                        from_me=True,
                        status=4,  # READ
                    ),
                    nev.web_message(
                        None, chat=f"{ALICE}@s.whatsapp.net", id="STUB", timestamp_s=1_690_000_061
                    ),
                ],
            },
            {
                "ID": f"{GROUP}@g.us",
                "name": "Team",
                "messages": [
                    nev.web_message(
                        nev.wa(conversation="standup?"),
                        chat=f"{GROUP}@g.us",
                        id="G1",
                        timestamp_s=1_690_000_100,
                        participant=f"{LID}@lid",
                    )
                ],
            },
            {"ID": f"{LID}1@lid", "pnJID": f"{BOB}@s.whatsapp.net", "messages": []},
            {"ID": "status@broadcast", "messages": []},
        ],
        pushnames={f"{ALICE}@s.whatsapp.net": "Alice", f"{BOB}@s.whatsapp.net": "Bob"},
        lids={f"{LID}@lid": f"{BOB}@s.whatsapp.net"},
    )

    nev.dispatch(client, chunk)
    links = [await events.next() for _ in range(2)]
    got = await events.next()
    names = [await events.next() for _ in range(3)]

    assert set(links) == {
        IdentityLink(lid=f"{LID}@lid", pn=f"{BOB}@s.whatsapp.net"),
        IdentityLink(lid=f"{LID}1@lid", pn=f"{BOB}@s.whatsapp.net"),
    }
    assert set(names) == {
        ContactName(f"{ALICE}@s.whatsapp.net", "Alice", "push"),
        ContactName(f"{BOB}@s.whatsapp.net", "Bob", "push"),
        ContactName(f"{GROUP}@g.us", "Team", "subject"),
    }
    assert isinstance(got, HistoryChunk)
    alice, team, bob = got.conversations
    assert (alice.chat_id, alice.name, alice.is_group, alice.unread_count) == (
        f"{ALICE}@s.whatsapp.net",
        "Alice",
        False,
        2,
    )
    assert [m.id for m in alice.messages] == ["H1", "H2"]  # the stub is not a message
    hi, back = alice.messages
    assert hi.timestamp == datetime(2023, 7, 22, 4, 26, 40, tzinfo=UTC)
    assert (hi.sender, hi.from_me, hi.sender_name) == (f"{ALICE}@s.whatsapp.net", False, "Alice")
    assert (back.sender, back.from_me, back.status) == (f"{own}@s.whatsapp.net", True, MessageStatus.READ)
    assert (team.chat_id, team.name, team.is_group) == (f"{GROUP}@g.us", "Team", True)
    assert team.messages[0].sender == f"{BOB}@s.whatsapp.net"
    assert team.messages[0].sender_alt == f"{LID}@lid"
    assert (bob.chat_id, bob.name) == (f"{BOB}@s.whatsapp.net", "Bob")


async def test_receipts_map_to_message_statuses(client: NeonizeClient) -> None:
    events = Events(client)
    chat = nev.jid(ALICE)
    nev.dispatch(
        client, nev.receipt("DELIVERED", chat=chat, sender=chat, ids=["A1", "A2"], timestamp_s=1_700_000_000)
    )
    nev.dispatch(
        client, nev.receipt("READ_SELF", chat=chat, sender=chat, ids=["X"], timestamp_s=1_700_000_001)
    )
    nev.dispatch(client, nev.receipt("READ", chat=chat, sender=chat, ids=["A1"], timestamp_s=1_700_000_005))

    delivered, read_on_phone, read = await events.next(), await events.next(), await events.next()

    at = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert delivered == Receipt(f"{ALICE}@s.whatsapp.net", ("A1", "A2"), MessageStatus.DELIVERED, at)
    # READ_SELF: the user read the chat on the phone (tests/test_neonize_inbox.py), not a receipt of ours.
    assert read_on_phone == ChatRead(f"{ALICE}@s.whatsapp.net", at + timedelta(seconds=1))
    assert read == Receipt(f"{ALICE}@s.whatsapp.net", ("A1",), MessageStatus.READ, at + timedelta(seconds=5))


async def test_pair_success_gives_the_device_jid_to_resume(client: NeonizeClient) -> None:
    got = await one(client, nev.pair_success("15551234567", 7))

    assert got == Paired(device_jid="15551234567:7@s.whatsapp.net", phone="+15551234567", push_name=None)
    with pytest.raises(AlreadyConnected):
        await client.request_pairing_code("+15551234567")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("LOGGED_OUT", Reason.LOGGED_OUT),
        ("MAIN_DEVICE_GONE", Reason.LOGGED_OUT),
        ("TEMP_BANNED", Reason.BANNED),
        ("CLIENT_OUTDATED", Reason.OUTDATED),
        ("UNKNOWN_LOGOUT", Reason.ERROR),
    ],
)
async def test_logged_out_reasons(client: NeonizeClient, reason: str, expected: Reason) -> None:
    assert await one(client, nev.logged_out(reason)) == LoggedOut(expected)


async def test_connection_events(client: NeonizeClient) -> None:
    events = Events(client)
    for ev in (nev.connected(), nev.disconnected(), nev.stream_replaced(), nev.temporary_ban(3600)):
        nev.dispatch(client, ev)

    got = [await events.next() for _ in range(4)]

    assert got == [
        Connected(None, None),  # never connected: no profile lookup in Go
        Disconnected(Reason.NETWORK, retrying=True),
        Disconnected(Reason.REPLACED, retrying=False),
        Disconnected(Reason.BANNED, retrying=False, retry_after_s=3600.0),
    ]


async def test_qr_codes_expire_after_60_then_20_seconds(client: NeonizeClient) -> None:
    events = Events(client)
    nev.push_qr(client, b"2@first,abc,def,ghi")
    nev.push_qr(client, b"2@second,abc,def,ghi")

    first, second = await events.next(), await events.next()

    now = datetime.now(UTC)
    assert isinstance(first, QrCode) and isinstance(second, QrCode)
    assert first.code == "2@first,abc,def,ghi"
    assert abs((first.expires_at - now).total_seconds() - 60) < 3
    assert abs((second.expires_at - now).total_seconds() - 20) < 3


# ---------------------------------------------------------------------- guards (no Go call may happen)


async def test_calls_on_a_client_that_never_connected_raise_instead_of_crashing(
    client: NeonizeClient,
) -> None:
    received = await one(
        client,
        nev.message_event(
            nev.image("x"), chat=nev.jid(ALICE), sender=nev.jid(ALICE), id="I1", timestamp_ms=5
        ),
    )
    assert isinstance(received, MessageReceived)
    with pytest.raises(SessionNotConnected):
        await client.send_text(ALICE, "hi")
    with pytest.raises(SessionNotConnected):
        await client.send_media(
            ALICE, OutgoingMedia(b"%PDF-1.4", MessageType.DOCUMENT, "application/pdf", "a.pdf")
        )
    with pytest.raises(SessionNotConnected):
        await client.send_voice_note(ALICE, VoiceNote(b"OggS", seconds=1))
    with pytest.raises(SessionNotConnected):
        await client.download_media(received.message, 16 * 1024 * 1024)
    with pytest.raises(SessionNotConnected):
        await client.mark_read(f"{ALICE}@s.whatsapp.net", [received.message])
    with pytest.raises(SessionNotConnected):
        await client.request_pairing_code("+15551234567")
    with pytest.raises(InvalidPhone):
        await client.request_pairing_code("not a phone")
    await client.logout()  # no device yet: nothing to unlink or delete


async def test_media_above_the_limit_is_refused_before_go_is_asked(client: NeonizeClient) -> None:
    received = await one(
        client,
        nev.message_event(
            nev.image("big"), chat=nev.jid(ALICE), sender=nev.jid(ALICE), id="I2", timestamp_ms=5
        ),
    )
    assert isinstance(received, MessageReceived) and received.message.media is not None
    declared = received.message.media.size
    assert declared == 48213
    # Not connected: any download would be refused as such; a size above the limit is refused first,
    # from what the message declares, so no Go call (and no byte of it) ever happens.
    with pytest.raises(MediaTooLarge):
        await client.download_media(received.message, declared - 1)
    with pytest.raises(SessionNotConnected):
        await client.download_media(received.message, declared)


async def test_a_stopped_client_is_done() -> None:
    c = NeonizeClient(options())
    stream = aiter(c.events())
    await c.stop()
    await c.stop()  # idempotent

    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), EVENT_TIMEOUT_S)
    with pytest.raises(ClientError):
        await c.connect()
    with pytest.raises(SessionNotConnected):
        await c.send_text(ALICE, "hi")


async def test_one_client_per_process_and_never_the_same_device_twice() -> None:
    first = NeonizeClient(options())
    try:
        with pytest.raises(ClientError):
            NeonizeClient(options())
    finally:
        await first.stop()
    same = options()
    second = NeonizeClient(same)
    await second.stop()
    # Stopped, the slot is free again, but a uuid is spent for the process's life: a second neonize
    # object with it would stop the Go client of the first from its finalizer.
    with pytest.raises(ClientError):
        NeonizeClient(same)
    third = NeonizeClient(options())
    await third.stop()


def test_bad_options_are_refused_before_any_go_object_exists() -> None:
    with pytest.raises(ClientError):
        NeonizeClient(ClientOptions(session_id="s", device_jid=None, auth_dsn="/tmp/whatsmeow.db"))
    with pytest.raises(ClientError):
        NeonizeClient(options(device_jid="15551234567@s.whatsapp.net"))  # not a device JID


# ---------------------------------------------------------------------- what we send (real waE2E messages)


def upload_response() -> Any:
    return nev.lib().proto.UploadResponse(
        url="https://mmg.whatsapp.net/up",
        DirectPath="/v/t62/up",
        Handle="",
        MediaKey=b"m" * 32,
        FileEncSHA256=b"e" * 32,
        FileSHA256=b"s" * 32,
        FileLength=321,
    )


def test_voice_note_is_a_ptt_opus_audio_message() -> None:
    lib = nev.lib()
    msg = outgoing.voice_message(
        lib, VoiceNote(b"OggS...", seconds=9, waveform=bytes(range(64))), upload_response(), None
    )

    audio = msg.audioMessage
    assert (audio.mimetype, audio.PTT, audio.seconds) == ("audio/ogg; codecs=opus", True, 9)
    assert (audio.directPath, audio.fileLength, audio.mediaKey) == ("/v/t62/up", 321, b"m" * 32)
    assert audio.waveform == bytes(range(64))


def test_document_reply_quotes_the_original_media() -> None:
    lib = nev.lib()
    quoted_image = nev.image("the photo")
    quoted = Message(
        id="3EB0Q",
        chat_id=f"{GROUP}@g.us",
        sender=f"{BOB}@s.whatsapp.net",
        from_me=False,
        timestamp=datetime.now(UTC),
        type=MessageType.IMAGE,
        media_ref={
            "kind": "imageMessage",
            "message": base64.b64encode(quoted_image.SerializeToString()).decode(),
        },
    )
    media = OutgoingMedia(
        b"%PDF-1.4", MessageType.DOCUMENT, "application/pdf", file_name="q3.pdf", caption="see"
    )

    msg = outgoing.media_message(lib, media, upload_response(), outgoing.reply_context(lib, quoted, None))

    doc = msg.documentMessage
    assert (doc.fileName, doc.caption, doc.mimetype) == ("q3.pdf", "see", "application/pdf")
    context = doc.contextInfo
    assert (context.stanzaID, context.participant) == ("3EB0Q", f"{BOB}@s.whatsapp.net")
    assert context.quotedMessage.imageMessage.caption == "the photo"


def test_text_reply_to_own_message_names_us_as_participant() -> None:
    lib = nev.lib()
    mine = Message("3EB0MINE", f"{ALICE}@s.whatsapp.net", "", True, datetime.now(UTC), text="earlier")

    msg = outgoing.text_message(lib, "later", outgoing.reply_context(lib, mine, "15559876543@s.whatsapp.net"))

    assert msg.extendedTextMessage.text == "later"
    assert msg.extendedTextMessage.contextInfo.participant == "15559876543@s.whatsapp.net"
    assert msg.extendedTextMessage.contextInfo.quotedMessage.conversation == "earlier"
    assert outgoing.text_message(lib, "plain", None).conversation == "plain"


# ---------------------------------------------------------------------- real connect attempts (child process)

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, os, sys, time
    mode, dsn, out_path, log_path = sys.argv[1:5]
    device = sys.argv[5] if len(sys.argv) > 5 else None
    logging.basicConfig(filename=log_path, level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
    root_before = (list(logging.getLogger().handlers), logging.getLogger().level)

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    async def main():
        from actors.clients.neonize import NeonizeClient, runtime
        from kernel.errors import SessionNotConnected
        from actors.ports import ClientOptions
        out = {"rss_before_mb": rss_mb()}
        started = time.perf_counter()
        client = NeonizeClient(ClientOptions(session_id="child-" + mode, device_jid=device, auth_dsn=dsn))
        out["construct_s"] = time.perf_counter() - started
        runtime.route_go_stdout()  # automatic only in a Ray actor
        out["import_s"] = runtime.load().import_s
        out["rss_after_construct_mb"] = rss_mb()
        out["bot_tag"] = os.environ.get("NEONIZE_BOT_TAG")
        out["root_unchanged"] = (list(logging.getLogger().handlers), logging.getLogger().level) == root_before
        events = aiter(client.events())
        await client.connect()
        first = await asyncio.wait_for(anext(events), 30)
        out["event"] = repr(first)
        guarded = []
        calls = (client.send_text("15551230001", "hi"), client.request_pairing_code("+15551230001"))
        for call in calls:
            try:
                await call
            except Exception as err:
                guarded.append(type(err).__name__)
        out["guarded"] = guarded
        os.write(1, b"go-stdout-probe line\\n")  # what Go's fmt.Println does: a raw write to fd 1
        await client.stop()
        out["rest"] = [repr(e) async for e in events]
        out["rss_end_mb"] = rss_mb()
        with open(out_path, "w") as f:
            json.dump(out, f)
        time.sleep(0.2)  # let the stdout reader log the probe line

    asyncio.run(main())
    """
)


def run_child(
    tmp_path: Path, mode: str, dsn: str, device_jid: str | None = None
) -> tuple[dict[str, Any], str]:
    out, log = tmp_path / f"{mode}.json", tmp_path / f"{mode}.log"
    args = [sys.executable, "-c", CHILD, mode, dsn, str(out), str(log)] + ([device_jid] if device_jid else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NEONIZE_BOT_TAG", None)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=CHILD_TIMEOUT_S, check=False)
    logs = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, (
        f"child exited {proc.returncode}\n{proc.stderr.decode()[-3000:]}\n{logs[-3000:]}"
    )
    assert b"go-stdout-probe" not in proc.stdout
    return json.loads(out.read_text()), logs


async def whatsmeow_tables(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT table_schema, count(*) AS n FROM information_schema.tables"
            " WHERE table_name LIKE 'whatsmeow%' GROUP BY table_schema"
        )
    finally:
        await conn.close()
    return {r["table_schema"]: r["n"] for r in rows}


async def insert_fake_device(dsn: str, device_jid: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, signed_pre_key,"
            " signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, adv_account_sig,"
            " adv_account_sig_key, adv_device_sig) VALUES ($1, 1, $2, $2, $2, 1, $3, $2, $4, $3, $2, $3)",
            device_jid,
            secrets.token_bytes(32),
            secrets.token_bytes(64),
            b"",
        )
    finally:
        await conn.close()


def test_import_leaves_the_root_logger_as_it_was() -> None:
    probe = (
        "import logging, os; root = logging.getLogger();"
        " from actors.clients.neonize import runtime; runtime.load();"
        " print(len(root.handlers), root.level, os.environ['NEONIZE_BOT_TAG'])"
    )
    raw = "import logging, neonize; root = logging.getLogger(); print(len(root.handlers), root.level)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NEONIZE_BOT_TAG", None)

    def run(code: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode().split()

    assert run(raw) == ["1", "20"]  # what importing neonize does: a StreamHandler, INFO
    assert run(probe) == ["0", "30", "off"]  # through the adapter: untouched (WARNING, no handler)


async def test_real_connect_fails_without_a_route_and_the_process_lives(
    tmp_path: Path, database_url: str, no_route_to_whatsapp: DeadEndProxy
) -> None:
    dsn = auth_dsn(database_url)

    out, logs = await asyncio.to_thread(run_child, tmp_path, "new", dsn)

    assert out["event"] == repr(Disconnected(Reason.NETWORK, retrying=False))
    assert no_route_to_whatsapp.attempts >= 1, "the dial went to the dead end, not to WhatsApp"
    assert out["guarded"] == ["SessionNotConnected", "SessionNotConnected"]
    assert out["rest"] == []
    assert out["bot_tag"] == "off" and out["root_unchanged"]
    # whatsmeow built its store in the dedicated schema and nothing in public.
    assert await whatsmeow_tables(database_url) == {"whatsmeow": 17}
    # Our lines carry the session id; Go's stdout noise ends up in the log, not on stdout.
    assert "session child-new: connect failed (network)" in logs
    assert "session child-new: stdout: go-stdout-probe line" in logs
    assert "neonize.aioze.client DEBUG session child-new: " in logs  # neonize's own lines are tagged too
    print(  # the numbers the team asked for, visible with -s / in -rA
        f"\nneonize import {out['import_s']:.2f}s, construct {out['construct_s']:.2f}s, RSS"
        f" {out['rss_before_mb']:.0f} MB -> {out['rss_after_construct_mb']:.0f} MB after one client,"
        f" {out['rss_end_mb']:.0f} MB after connect+stop"
    )


async def test_resume_of_a_deleted_device_is_a_logout_without_touching_go(
    tmp_path: Path, database_url: str
) -> None:
    # A Go client resumed with a jid that has no row segfaults the process: exit code 0 proves it never ran.
    out, _ = await asyncio.to_thread(
        run_child, tmp_path, "gone", auth_dsn(database_url), "15559990000:3@s.whatsapp.net"
    )

    assert out["event"] == repr(LoggedOut(Reason.LOGGED_OUT))


async def test_resume_of_a_stored_device_dials(
    tmp_path: Path, database_url: str, no_route_to_whatsapp: DeadEndProxy
) -> None:
    dsn = auth_dsn(database_url)
    await asyncio.to_thread(run_child, tmp_path, "new", dsn)  # whatsmeow creates its tables
    await insert_fake_device(dsn, "15559990001:5@s.whatsapp.net")

    out, logs = await asyncio.to_thread(run_child, tmp_path, "resume", dsn, "15559990001:5@s.whatsapp.net")

    assert out["event"] == repr(Disconnected(Reason.NETWORK, retrying=False))
    assert (
        "session child-resume: [Client/Socket] Dialing wss://web.whatsapp.com" in logs
    )  # whatsmeow loaded the device
    assert no_route_to_whatsapp.attempts >= 2, "both dials went to the dead end"
