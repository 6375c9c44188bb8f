"""What a session writes to PostgreSQL, as journal entries (`actors.journal`), and how each is applied.

Each entry is a frozen value with a stable JSON form (`WRITES`: it waits in the spool, maybe across a
process restart or an upgrade) and whose application is idempotent (it may be applied twice after a
crash): messages are upserts keyed by id, receipts only move forward, reactions and edits only to newer
ones, a revoke or a read only once, row fields are set to values, not incremented. A frame is published
when its change is stored for the first time, so a replay never publishes twice, with one exception: a
group's own event (`StoreGroupChange`) leaves nothing to tell a first application from a second, so an
entry replayed after a crash sends its `chat` frame again (the same chat, the same change).

The JSON form is `{"type": <class name>, "entry": <its fields>}` (`actors.plain_json`). An entry may gain
a field with a default; renaming or removing one, or a new field without a default, changes what older
spools hold: bump `actors.spool.FORMAT` and decode the older format too (tests/test_spool_format.py
keeps a spool of format 1 that every release must read).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from actors.bus import EventBus
from actors.journal import Together
from actors.plain_json import from_plain, to_plain
from actors.ports import SessionStorePort as Store
from actors.spool import Codec
from kernel.domain import Message, MessageStatus, Reaction, Reason, SessionStatus
from kernel.events import GroupChanged, HistoryChunk
from kernel.stored import SendRecord
from kernel.wire import JSON, chat_payload, group_payload, msg_payload, update_payload


@dataclass(frozen=True, slots=True)
class StoreMessage:
    message: Message
    chat_name: str | None
    count_unread: bool


@dataclass(frozen=True, slots=True)
class StoreReceipt:
    chat_id: str
    message_ids: tuple[str, ...]
    status: MessageStatus


@dataclass(frozen=True, slots=True)
class StoreReaction:
    chat_id: str
    message_id: str
    reaction: Reaction


@dataclass(frozen=True, slots=True)
class StoreEdit:
    chat_id: str
    message_id: str
    text: str
    edited_at: datetime


@dataclass(frozen=True, slots=True)
class StoreRevoke:
    chat_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class StoreChatRead:
    chat_id: str
    up_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class SaveContactName:
    jid: str
    name: str
    source: str  # "contact" (address book), "subject" (a group's), "push" (their own)


@dataclass(frozen=True, slots=True)
class SaveIdentityLink:
    lid: str
    pn: str


@dataclass(frozen=True, slots=True)
class SavePicture:
    chat_id: str
    picture_id: str | None  # None: the chat has no picture
    url: str | None
    checked_at: datetime | None  # None: out of date (WhatsApp said it changed)


@dataclass(frozen=True, slots=True)
class StoreHistory:
    chunk: HistoryChunk


@dataclass(frozen=True, slots=True)
class SaveState:
    status: SessionStatus
    reason: Reason | None


@dataclass(frozen=True, slots=True)
class SaveProfile:
    phone: str | None
    display_name: str | None
    profile_pic_url: str | None
    device_jid: str | None


@dataclass(frozen=True, slots=True)
class ClearDevice:
    pass


@dataclass(frozen=True, slots=True)
class SaveCounters:
    qr_rounds: int | None = None
    connect_failures: int | None = None


@dataclass(frozen=True, slots=True)
class SaveLastSeen:
    at: datetime


@dataclass(frozen=True, slots=True)
class SaveSendRecord:
    user_id: str
    record: SendRecord


@dataclass(frozen=True, slots=True)
class DropSendRecord:
    user_id: str
    key: str


@dataclass(frozen=True, slots=True)
class StoreVote:
    chat_id: str
    poll_id: str
    voter: str
    option_hashes: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class StoreGroupChange:
    """A group's own event: its chat made or renamed, and a `chat` frame saying what changed."""

    change: GroupChanged


Write = (
    StoreGroupChange
    | StoreVote
    | StoreMessage
    | StoreReceipt
    | StoreReaction
    | StoreEdit
    | StoreRevoke
    | StoreChatRead
    | SaveContactName
    | SaveIdentityLink
    | SavePicture
    | StoreHistory
    | SaveState
    | SaveProfile
    | ClearDevice
    | SaveCounters
    | SaveLastSeen
    | SaveSendRecord
    | DropSendRecord
)

_ENTRY_TYPES: dict[str, type[Write]] = {cls.__name__: cls for cls in get_args(Write)}


def encode_write(entry: Write) -> bytes:
    doc = {"type": type(entry).__name__, "entry": to_plain(entry)}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_write(body: bytes) -> Write:
    """The entry `encode_write` made; ValueError for anything else (a bad record, an unknown type)."""
    doc = json.loads(body)  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    if not isinstance(doc, dict) or set(doc) != {"type", "entry"}:
        raise ValueError("not a journal entry")
    cls = _ENTRY_TYPES.get(doc["type"]) if isinstance(doc["type"], str) else None
    if cls is None:
        raise ValueError(f"unknown journal entry type {str(doc['type'])[:40]!r}")
    entry: Write = from_plain(cls, doc["entry"])
    return entry


WRITES = Codec(encode_write, decode_write)


Events = list[tuple[str, JSON]]
ALONE = (SaveProfile, ClearDevice, StoreHistory)  # applied in a transaction of their own


def applier(
    store: Store, bus: EventBus, on_phone_taken: Callable[[SaveProfile, Exception], Awaitable[None]]
) -> tuple[Callable[[Write], Awaitable[None]], Together]:
    """How the journal applies one entry, and a run of entries in one transaction.

    Either way the frames of what was stored for the first time are published after the commit, in one
    write to Redis. A pairing (`SaveProfile`: a phone taken elsewhere is handled outside the store), a
    logout and a history sync (large) are applied alone.
    """
    from kernel.errors import PhoneAlreadyPaired

    async def stored(entry: Write, events: Events) -> None:
        """Apply `entry` to the store; the frames of what changed go to `events`."""
        match entry:
            case StoreMessage(message, chat_name, count_unread):
                if await store.inbox.add_message(message, chat_name=chat_name, count_unread=count_unread):
                    events.append(("msg", msg_payload(message)))
            case StoreReceipt(chat_id, ids, status):
                # Both frames of each changed message, the message rendered once.
                for changed in await store.inbox.apply_receipt(chat_id, ids, status):
                    frame = msg_payload(changed)
                    events.append(("msg", frame))
                    events.append(("message_update", update_payload(changed, "receipt", frame["message"])))
            case StoreReaction(chat_id, message_id, reaction):
                if (reacted := await store.inbox.apply_reaction(chat_id, message_id, reaction)) is not None:
                    events.append(("message_update", update_payload(reacted, "reaction")))
            case StoreVote(chat_id, poll_id, voter, hashes, at):
                if (voted := await store.inbox.apply_vote(chat_id, poll_id, voter, hashes, at)) is not None:
                    events.append(("message_update", update_payload(voted, "vote")))
            case StoreEdit(chat_id, message_id, text, edited_at):
                if (edited := await store.inbox.apply_edit(chat_id, message_id, text, edited_at)) is not None:
                    events.append(("message_update", update_payload(edited, "edit")))
            case StoreRevoke(chat_id, message_id):
                if (revoked := await store.inbox.apply_revoke(chat_id, message_id)) is not None:
                    events.append(("message_update", update_payload(revoked, "revoke")))
            case StoreChatRead(chat_id, up_to):
                if (read := await store.inbox.apply_chat_read(chat_id, up_to)) is not None:
                    events.append(("chat", chat_payload(read.chat_id, read.unread_count, read.name)))
            case SaveContactName(jid, name, source):
                if (named := await store.people.save_contact_name(jid, name, source)) is not None:
                    events.append(("chat", chat_payload(named.id, named.unread_count, named.name)))
            case StoreGroupChange(change):
                group = await store.people.group_chat(change.chat_id, change.subject)
                events.append(("chat", group_payload(group.id, group.unread_count, group.name, change)))
            case SaveIdentityLink(lid, pn):
                if (merged := await store.people.link_identity(lid, pn)) is not None:
                    events.append(("chat", chat_payload(merged.id, merged.unread_count, merged.name)))
            case SavePicture(chat_id, picture_id, url, checked_at):
                await store.people.save_picture(chat_id, picture_id, url, checked_at)
            case StoreHistory(chunk):
                for chat in await store.inbox.apply_history(chunk):
                    events.append(("chat", chat_payload(chat.chat_id, chat.unread_count, chat.name)))
            case SaveState(status, reason):
                await store.save_state(status, reason)
            case SaveProfile():
                raise AssertionError("a pairing is applied alone")  # `apply` handles it
            case ClearDevice():
                await store.clear_device()
            case SaveCounters(qr_rounds, connect_failures):
                await store.set_counters(qr_rounds=qr_rounds, connect_failures=connect_failures)
            case SaveLastSeen(at):
                await store.touch_last_seen(at)
            case SaveSendRecord(user_id, record):
                await store.send_records.save(user_id, record)
            case DropSendRecord(user_id, key):
                await store.send_records.delete(user_id, key)

    async def publish(events: Events) -> None:
        if events:
            await bus.publish_all(events)

    async def apply(entry: Write) -> None:
        if isinstance(entry, SaveProfile):
            try:
                await store.save_profile(
                    phone=entry.phone,
                    display_name=entry.display_name,
                    profile_pic_url=entry.profile_pic_url,
                    device_jid=entry.device_jid,
                )
            except PhoneAlreadyPaired as err:
                await on_phone_taken(entry, err)
            return
        events: Events = []
        await stored(entry, events)
        await publish(events)

    async def apply_all(entries: Sequence[Write]) -> None:
        async def body() -> Events:
            events: Events = []  # a new list if the body runs again on a new connection
            for entry in entries:
                await stored(entry, events)
            return events

        await publish(await store.in_one_transaction(body))

    return apply, Together(apply_all, lambda entry: not isinstance(entry, ALONE))
