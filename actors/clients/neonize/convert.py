"""neonize protobufs → domain values. Pure functions over the protobuf objects: no Go call, no neonize import.

Identities: WhatsApp increasingly addresses people by `@lid` ids. The inbox shows `sender` and chat ids
(the wire format carries no alternative id), so the **phone JID is primary** wherever whatsmeow gives
one: a `@lid` sender with a phone `SenderAlt` becomes `sender=<phone>`, `sender_alt=<lid>`, and a 1:1
chat addressed by lid gets the phone JID as `chat_id` (`SenderAlt`, or `RecipientAlt` for our own
messages; in history, the conversation's `pnJID` or the chunk's lid→phone mappings). One person is then
one chat across history and live messages, and replies to that chat id reach them (whatsmeow maps phone
to lid itself). Without a phone alternative the lid stays.

Timestamps: `MessageEv.Info.Timestamp` is in milliseconds; receipts, history messages and send
responses are in seconds. All become aware UTC datetimes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from actors.clients.neonize.kinds import content_of
from kernel.domain import Message, MessageStatus, Reason
from kernel.events import (
    CallOffered,
    ContactName,
    HistoryChunk,
    HistoryConversation,
    IdentityLink,
    Receipt,
)
from kernel.ids import GROUP_SERVER, LID_SERVER, USER_SERVER
from kernel.inbox_scope import ChatKind, chat_kind

log = logging.getLogger(__name__)

_RECEIPT_STATUS = {
    "DELIVERED": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "PLAYED": MessageStatus.PLAYED,
}
# WebMessageInfo.Status of our own messages in a history sync.
_HISTORY_STATUS = {
    "ERROR": MessageStatus.FAILED,
    "PENDING": MessageStatus.PENDING,
    "SERVER_ACK": MessageStatus.SENT,
    "DELIVERY_ACK": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "PLAYED": MessageStatus.PLAYED,
}
_LOGGED_OUT_REASONS = {
    "LOGGED_OUT": Reason.LOGGED_OUT,
    "MAIN_DEVICE_GONE": Reason.LOGGED_OUT,
    "TEMP_BANNED": Reason.BANNED,
    "CLIENT_OUTDATED": Reason.OUTDATED,
}
# ConnectFailure reasons that are WhatsApp's servers having trouble rather than something about us.
_SERVER_TROUBLE = frozenset({"SERVICE_UNAVAILABLE", "INTERNAL_SERVER_ERROR"})


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def from_s(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def enum_name(message: Any, field: str) -> str:
    """The name of an enum field's value (`"READ"`), without importing the protobuf module."""
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = enum.values_by_number.get(getattr(message, field))
    return str(value.name) if value is not None else str(getattr(message, field))


def jid_str(jid: Any) -> str | None:
    """`user@server` of a neonize JID without its device part; None for an empty JID."""
    if jid.IsEmpty or not jid.Server:
        return None
    return f"{jid.User}@{jid.Server}" if jid.User else str(jid.Server)


def device_jid_str(jid: Any) -> str:
    """`user:device@server`: the key of whatsmeow_device, what a later start resumes."""
    return f"{jid.User}:{jid.Device}@{jid.Server}"


def is_phone(jid: str | None) -> bool:
    return jid is not None and jid.endswith("@" + USER_SERVER)


def is_lid(jid: str | None) -> bool:
    return jid is not None and jid.endswith("@" + LID_SERVER)


def phone_first(jid: str, alt: str | None) -> tuple[str, str | None]:
    """(primary, alternative): a lid with a phone alternative swaps, so the phone comes first."""
    if is_lid(jid) and is_phone(alt):
        return alt or jid, jid
    return jid, alt if alt != jid else None


def message_from_event(ev: Any, own_jid: str | None) -> tuple[Message, str | None] | None:
    """A live MessageEv as (Message, chat name), or None when it is not a chat bubble or its chat is not
    one the inbox holds (`kernel.inbox_scope`: status, newsletters, Meta AI and system chats are dropped;
    a broadcast-list message goes to its sender's direct chat, as on the phone)."""
    info, src = ev.Info, ev.Info.MessageSource
    chat = jid_str(src.Chat)
    if chat is None or not ev.HasField("Message"):
        return None
    kind = chat_kind(chat)
    if kind is ChatKind.BROADCAST_LIST and not src.IsFromMe:
        chat = jid_str(src.Sender) or chat
        kind = chat_kind(chat)
    if kind not in (ChatKind.DIRECT, ChatKind.GROUP):
        return None
    content = content_of(ev.Message)
    if content is None:
        return None
    sender, sender_alt = phone_first(jid_str(src.Sender) or own_jid or "", jid_str(src.SenderAlt))
    if src.IsFromMe and is_lid(sender) and own_jid:
        sender, sender_alt = own_jid, sender
    if kind is ChatKind.DIRECT and is_lid(chat):
        alt = jid_str(src.RecipientAlt) if src.IsFromMe else jid_str(src.SenderAlt)
        chat = phone_first(chat, alt)[0]
    message = Message(
        id=str(info.ID),
        chat_id=chat,
        sender=sender,
        from_me=bool(src.IsFromMe),
        timestamp=from_ms(info.Timestamp),
        sender_name=str(info.Pushname) or None,
        sender_alt=sender_alt,
        **content.fields(),
    )
    chat_name = message.sender_name if kind is ChatKind.DIRECT and not src.IsFromMe else None
    return message, chat_name


def identity_links(src: Any) -> list[IdentityLink]:
    """The LID ↔ phone pairs a MessageSource reveals (sender and its alternative; a 1:1 chat and the
    recipient's alternative), each once."""
    links: dict[str, IdentityLink] = {}
    pairs = [(src.Sender, src.SenderAlt)]
    if not src.IsGroup:
        pairs.append((src.Chat, src.RecipientAlt))
    for a, b in pairs:
        one, other = jid_str(a), jid_str(b)
        if is_lid(one) and is_phone(other):
            links[str(one)] = IdentityLink(lid=str(one), pn=str(other))
        elif is_phone(one) and is_lid(other):
            links[str(other)] = IdentityLink(lid=str(other), pn=str(one))
    return list(links.values())


def history_names(chunk: HistoryChunk, ev: Any) -> list[ContactName]:
    """Names a history chunk tells: a 1:1 conversation's `name` is the phone's address-book name, a
    group's its subject; push names are the contacts' own."""
    names: dict[str, ContactName] = {}
    chats = {conv.chat_id for conv in chunk.conversations}
    for p in ev.Data.pushnames:  # only for this chunk's chats: a chunk can name thousands of people
        if p.pushname and str(p.ID) in chats:
            names[str(p.ID)] = ContactName(str(p.ID), str(p.pushname), "push")
    by_id: dict[str, Any] = {}
    for c in ev.Data.conversations:
        by_id[str(c.ID)] = by_id[str(c.pnJID)] = c
    for conv in chunk.conversations:
        raw = by_id.get(conv.chat_id)
        if raw is not None and raw.name:
            source = "subject" if conv.is_group else "contact"
            names[conv.chat_id] = ContactName(conv.chat_id, str(raw.name), source)
    return list(names.values())


def history_links(ev: Any) -> list[IdentityLink]:
    """The LID ↔ phone pairs a history chunk carries (its mappings and its conversations' pnJID)."""
    data = ev.Data
    links = {str(m.lidJID): str(m.pnJID) for m in data.phoneNumberToLidMappings if m.pnJID and m.lidJID}
    for conv in data.conversations:
        if is_lid(str(conv.ID)) and is_phone(str(conv.pnJID)):
            links[str(conv.ID)] = str(conv.pnJID)
    return [IdentityLink(lid=lid, pn=pn) for lid, pn in links.items() if is_lid(lid) and is_phone(pn)]


def receipt_from_event(ev: Any) -> Receipt | None:
    """A ReceiptEv for messages we sent, or None for the kinds we do not track (self, retry, ...).

    In a group every participant's receipt arrives on its own: the first one moves the message on.
    """
    status = _RECEIPT_STATUS.get(enum_name(ev, "Type"))
    src = ev.MessageSource
    chat = jid_str(src.Chat)
    if status is None or chat is None or src.IsFromMe or not ev.MessageIDs:
        return None
    if not src.IsGroup and is_lid(chat):
        chat = phone_first(chat, jid_str(src.SenderAlt))[0]
    return Receipt(chat, tuple(str(i) for i in ev.MessageIDs), status, from_s(ev.Timestamp))


def history_chunk(ev: Any, own_jid: str | None) -> HistoryChunk | None:
    """A HistorySyncEv chunk; None when it holds no conversation (e.g. a push-name-only chunk)."""
    data = ev.Data
    lid_to_phone = {str(m.lidJID): str(m.pnJID) for m in data.phoneNumberToLidMappings if m.pnJID}
    pushnames = {str(p.ID): str(p.pushname) for p in data.pushnames if p.pushname}
    conversations = []
    for conv in data.conversations:
        raw_id = str(conv.ID)
        if not raw_id or chat_kind(raw_id) not in (ChatKind.DIRECT, ChatKind.GROUP):
            continue  # status, broadcast lists, newsletters, Meta AI, system chats
        chat_id = (str(conv.pnJID) or lid_to_phone.get(raw_id) or raw_id) if is_lid(raw_id) else raw_id
        group = chat_id.endswith("@" + GROUP_SERVER)
        name = str(conv.name) or str(conv.displayName) or None
        if name is None and not group:
            name = pushnames.get(chat_id) or pushnames.get(raw_id)
        messages = []
        for item in conv.messages:
            message = _history_message(item.message, chat_id, raw_id, group, own_jid, lid_to_phone, pushnames)
            if message is not None:
                messages.append(message)
        conversations.append(
            HistoryConversation(chat_id, name, group, int(conv.unreadCount), tuple(messages))
        )
    if not conversations:
        return None
    return HistoryChunk(tuple(conversations))


def _history_message(
    info: Any,
    chat_id: str,
    raw_chat: str,
    group: bool,
    own_jid: str | None,
    lid_to_phone: Mapping[str, str],
    pushnames: Mapping[str, str],
) -> Message | None:
    if not info.HasField("message"):
        return None  # stubs: "joined", "changed the subject", ...
    content = content_of(info.message)
    if content is None:
        return None
    key = info.key
    from_me = bool(key.fromMe)
    raw_sender = str(key.participant or info.participant) if group else raw_chat
    if from_me:
        sender, alt = own_jid or "", None
    elif group:
        sender, alt = phone_first(raw_sender, lid_to_phone.get(raw_sender))
    else:
        sender, alt = chat_id, (raw_chat if raw_chat != chat_id else None)
    return Message(
        id=str(key.ID),
        chat_id=chat_id,
        sender=sender,
        from_me=from_me,
        timestamp=from_s(info.messageTimestamp),
        sender_name=(str(info.pushName) or pushnames.get(raw_sender) or None) if not from_me else None,
        sender_alt=alt,
        status=_HISTORY_STATUS.get(enum_name(info, "status"), MessageStatus.SENT)
        if from_me
        else MessageStatus.SENT,
        **content.fields(),
    )


def logged_out_reason(name: str) -> Reason:
    """LoggedOutEv.Reason → our reason: unlinked/main device gone, banned, outdated, anything else."""
    return _LOGGED_OUT_REASONS.get(name, Reason.ERROR)


def connect_failure_reason(name: str) -> Reason:
    return Reason.NETWORK if name in _SERVER_TROUBLE else Reason.ERROR


def connect_error_reason(error: BaseException) -> Reason:
    """Why `Neonize()` returned an error: the dial (network) or anything else (auth store, proxy, ...)."""
    text = str(error).lower()
    network = ("dial", "websocket", "lookup", "no such host", "timeout", "connection refused", "network")
    if "database" in text or "pq:" in text:
        return Reason.ERROR
    return Reason.NETWORK if any(word in text for word in network) else Reason.ERROR


def declared_size(ref: Any, field: str | None) -> int:
    """The plaintext size a media sub-message (`media_ref`) declares; 0 when it does not say."""
    if not field or not ref.HasField(field):
        return 0
    return int(getattr(getattr(ref, field), "fileLength", 0) or 0)


def call_offer(ev: Any) -> CallOffered | None:
    """A CallOfferEv: who calls (whatsmeow's `From`, what RejectCall answers) and their chat."""
    meta = ev.basicCallMeta
    caller = jid_str(getattr(meta, "from"))
    if caller is None or not meta.callID:
        return None
    chat, _alt = phone_first(caller, jid_str(meta.callCreatorAlt))
    stamp = int(meta.timestamp)
    at = (from_ms(stamp) if stamp > 10**12 else from_s(stamp)) if stamp else datetime.now(UTC)
    return CallOffered(chat, caller, str(meta.callID), at)
