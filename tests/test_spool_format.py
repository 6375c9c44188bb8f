"""The spool on disk: a data format that never runs code, in a folder nobody else can write.

- every journal entry survives its JSON form, and a spool written in format 1 (kept here byte for byte)
  stays readable: an upgrade that changes an entry must still read it;
- a file this release must not read (a planted pickle, a newer format) is refused with a clear error
  and left as it was; a pickle inside a record is set aside as bad data, never unpickled;
- a link (for the folder or a file) is refused, never followed; a folder of another user, or one that
  others may write, is refused; a session that meets such a folder does not start and says why.
"""

from __future__ import annotations

import logging
import os
import pickle
import stat
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest

from actors.bus import OUTBOX, _Event
from actors.private_files import PrivateFilesRefused
from actors.spool import Spool, SpoolUnreadable
from actors.writes import (
    WRITES,
    ClearDevice,
    DropSendRecord,
    SaveContactName,
    SaveCounters,
    SaveIdentityLink,
    SaveLastSeen,
    SavePicture,
    SaveProfile,
    SaveSendRecord,
    SaveState,
    StoreChatRead,
    StoreEdit,
    StoreGroupChange,
    StoreHistory,
    StoreMessage,
    StoreReaction,
    StoreReceipt,
    StoreRevoke,
    StoreVote,
    Write,
)
from kernel.domain import (
    ContactCard,
    Location,
    Media,
    Message,
    MessageStatus,
    MessageType,
    Poll,
    PollVote,
    Reaction,
    Reason,
    SessionStatus,
)
from kernel.events import GroupChanged, HistoryChunk, HistoryConversation
from kernel.stored import SendRecord
from tests.sessionkit import Factory, session_factory

AT = datetime(2026, 12, 7, 3, 30, 15, 250000, tzinfo=UTC)
MESSAGE = Message(
    id="3EB0C0FFEE",
    chat_id="15557001234@s.whatsapp.net",
    sender="15557001234@s.whatsapp.net",
    from_me=False,
    timestamp=AT,
    type=MessageType.IMAGE,
    text="caption ✓ \ud83d",  # a lone surrogate, as a broken client may send
    sender_name="Ann",
    media=Media("image/jpeg", "a.jpg", 2048, None),
    media_ref={"directPath": "/v/t62", "mediaKey": "a2V5", "fileLength": 2048},
    reactions=(Reaction("15557001235@s.whatsapp.net", "👍", AT),),
    location=Location(52.5, 13.4, "Berlin"),
    contacts=(ContactCard("Bob", "BEGIN:VCARD\nEND:VCARD"),),
    poll=Poll("lunch?", ("yes", "no"), 0, votes=(PollVote("v@s.whatsapp.net", ("yes",), AT),)),
)
SAMPLES: list[Write] = [
    StoreMessage(MESSAGE, "Ann", True),
    StoreReceipt("c@s.whatsapp.net", ("a", "b"), MessageStatus.READ),
    StoreReaction("c@s.whatsapp.net", "m", Reaction("s", "", AT)),
    StoreVote("c@s.whatsapp.net", "m", "v@s.whatsapp.net", ("ab" * 32,), AT),
    StoreGroupChange(
        GroupChanged("g@g.us", AT, "b@s.whatsapp.net", "Team", "", ("j@s.whatsapp.net",), ("l",))
    ),
    StoreEdit("c@s.whatsapp.net", "m", "new text", AT),
    StoreRevoke("c@s.whatsapp.net", "m"),
    StoreChatRead("c@s.whatsapp.net"),
    StoreChatRead("c@s.whatsapp.net", AT),
    SaveContactName("c@s.whatsapp.net", "Ann", "push"),
    SaveIdentityLink("123@lid", "15557001234@s.whatsapp.net"),
    SavePicture("c@s.whatsapp.net", None, None, None),
    SavePicture("c@s.whatsapp.net", "pic-1", "https://example.invalid/p.jpg", AT),
    StoreHistory(HistoryChunk((HistoryConversation("c@g.us", "Team", True, 2, (MESSAGE,)),))),
    SaveState(SessionStatus.DISCONNECTED, Reason.LOGGED_OUT),
    SaveProfile("+15557001234", "Me", None, "15557001234:7@s.whatsapp.net"),
    ClearDevice(),
    SaveCounters(qr_rounds=2),
    SaveLastSeen(AT),
    SaveSendRecord("user-1", SendRecord("key-1", "sid", "fp", None, None)),
    DropSendRecord("user-1", "key-1"),
]

# A spool of format 1 as this release writes it, kept byte for byte: every later release reads it.
FORMAT_1_RECORDS = [
    b'{"type":"SaveState","entry":{"status":"connected","reason":null}}',
    b'{"type":"StoreReceipt","entry":{"chat_id":"c@s.whatsapp.net","message_ids":["a"],"status":"read"}}',
    b'{"type":"StoreMessage","entry":{"message":{"id":"m1","chat_id":"c@s.whatsapp.net","sender":"c@s.'
    b'whatsapp.net","from_me":false,"timestamp":"2026-12-07T03:30:15.250000+00:00","type":"text","text":'
    b'"hello","sender_name":null,"sender_alt":null,"media":null,"quoted_id":null,"status":"sent","media_ref'
    b'":null,"summary":null,"edited_at":null,"reactions":[],"location":null,"contacts":[],"poll":null,'
    b'"view_once":false},"chat_name":null,"count_unread":true}}',
]
FORMAT_1_ENTRIES = [
    SaveState(SessionStatus.CONNECTED, None),
    StoreReceipt("c@s.whatsapp.net", ("a",), MessageStatus.READ),
    StoreMessage(Message("m1", "c@s.whatsapp.net", "c@s.whatsapp.net", False, AT, text="hello"), None, True),
]


def _file(version: int, records: list[bytes]) -> bytes:
    return b"WABSPOOL" + struct.pack("<H", version) + b"".join(struct.pack("<I", len(r)) + r for r in records)


class _RunsCode:
    """Unpickling this creates `marker`: what a planted spool would do to a process that unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _spool(path: Path) -> Spool:
    return Spool(path, codec=WRITES, max_bytes=1 << 20)


def test_every_journal_entry_survives_its_json_form() -> None:
    assert {type(e) for e in SAMPLES} == set(get_args(Write)), "give each new entry a sample here"
    for entry in SAMPLES:
        body = WRITES.encode(entry)
        assert b"\x80\x05" not in body and body.isascii()  # JSON text, not a pickle
        back = WRITES.decode(body)
        assert back == entry
        if isinstance(back, StoreMessage):  # `Message.media_ref` is left out of ==
            assert back.message.media_ref == MESSAGE.media_ref


def test_a_spool_of_format_1_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    path.write_bytes(_file(1, FORMAT_1_RECORDS))
    path.chmod(0o600)
    spool = _spool(path)
    assert spool.pending == 3
    assert [entry for _, entry in spool.head(10)] == FORMAT_1_ENTRIES
    assert spool.failed == 0


def test_the_outbox_keeps_what_a_reader_needs_to_drop_a_resent_copy(tmp_path: Path) -> None:
    event = _Event("msg", '{"chatId":"c","message":{"text":"hi"}}', "a1b2c3", 42)
    outbox = Spool(tmp_path / "s.outbox", codec=OUTBOX, max_bytes=1 << 20)
    outbox.append(event)
    outbox.close()
    again = Spool(tmp_path / "s.outbox", codec=OUTBOX, max_bytes=1 << 20)
    assert [e for _, e in again.head(10)] == [event]


def test_a_planted_pickle_is_refused_and_never_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "code-ran"
    body = pickle.dumps(_RunsCode(marker))
    planted = struct.pack("<I", len(body)) + body  # the spool format of the release before format 1
    path = tmp_path / "s.spool"
    path.write_bytes(planted)
    with caplog.at_level(logging.ERROR), pytest.raises(SpoolUnreadable, match="never read"):
        _spool(path)
    assert not marker.exists()
    assert path.read_bytes() == planted  # left for an operator to look at, not quarantined
    assert "not a spool of format 1" in caplog.text


def test_a_pickle_inside_a_record_is_set_aside_as_bad_data(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "s.spool"
    path.write_bytes(_file(1, [pickle.dumps(_RunsCode(marker)), FORMAT_1_RECORDS[0]]))
    spool = _spool(path)
    assert [entry for _, entry in spool.head(10)] == [None, FORMAT_1_ENTRIES[0]]  # None: set aside
    assert spool.failed == 1 and not marker.exists()


def test_a_spool_of_a_newer_format_is_refused_and_left_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.spool"
    newer = _file(2, [b'{"type":"SomethingNew","entry":{}}'])
    path.write_bytes(newer)
    with caplog.at_level(logging.ERROR), pytest.raises(SpoolUnreadable, match="format 2, newer"):
        _spool(path)
    assert path.read_bytes() == newer
    assert "format 2 is newer than this release's 1" in caplog.text


def test_a_linked_spool_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"somebody's file")
    folder = tmp_path / "spools"
    folder.mkdir(mode=0o700)
    (folder / "s.spool").symlink_to(target)
    with pytest.raises(PrivateFilesRefused, match="symbolic link"):
        _spool(folder / "s.spool")
    assert target.read_bytes() == b"somebody's file"


def test_a_linked_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "spools").symlink_to(real)
    with pytest.raises(PrivateFilesRefused, match="symbolic link"):
        _spool(tmp_path / "spools" / "s.spool")
    assert list(real.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "spools"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(PrivateFilesRefused, match="belongs to uid 65534"):
        _spool(folder / "s.spool")
    assert list(folder.iterdir()) == []


def test_a_folder_others_may_write_is_refused_and_a_readable_one_narrowed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # what /tmp/whatsapp-bridge-spool is when somebody else made it so
    with pytest.raises(PrivateFilesRefused, match="writable by group or others"):
        _spool(shared / "s.spool")
    assert list(shared.iterdir()) == []
    older = tmp_path / "older"
    older.mkdir()
    older.chmod(0o755)  # made by a release before format 1
    _spool(older / "s.spool").close()
    assert stat.S_IMODE(older.stat().st_mode) == 0o700
    fresh = tmp_path / "new" / "spools"
    _spool(fresh / "s.spool").close()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / "s.spool").stat().st_mode) == 0o600


@pytest.fixture
async def shared_folder_sessions(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    async with session_factory(database_url, redis_url, shared) as build:
        yield build


async def test_a_session_refuses_to_start_on_a_folder_others_may_write(
    shared_folder_sessions: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        session, exits = await shared_folder_sessions()
        await exits.happened.wait()
    assert "writable by group or others" in exits.reasons[0]
    assert session.current() is None  # never loaded its row, never connected
    assert "writable by group or others" in caplog.text
