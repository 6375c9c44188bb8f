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

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actors.domain import Media, Message, MessageStatus, MessageType, Reason
from actors.events import HistoryChunk, HistoryConversation, Receipt
from actors.ids import GROUP_SERVER, LID_SERVER, USER_SERVER

log = logging.getLogger(__name__)

# Containers whose `.message` is the real content (view-once, disappearing, captioned documents, ...).
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "deviceSentMessage",
    "lottieStickerMessage",
    "groupMentionedMessage",
)
# Fields that make a message a chat bubble, in the order they are looked for (`conversation` last:
# group messages carry it next to `senderKeyDistributionMessage`).
_MEDIA_TYPES = {
    "imageMessage": MessageType.IMAGE,
    "videoMessage": MessageType.VIDEO,
    "ptvMessage": MessageType.VIDEO,
    "audioMessage": MessageType.AUDIO,
    "documentMessage": MessageType.DOCUMENT,
    "stickerMessage": MessageType.STICKER,
}
# Fields that are protocol traffic, not something a person reads: such messages produce no event.
# (Reactions, edits and revokes are not modelled yet.)
_NOT_A_BUBBLE = frozenset(
    {
        "protocolMessage",
        "senderKeyDistributionMessage",
        "fastRatchetKeySenderKeyDistributionMessage",
        "messageContextInfo",
        "reactionMessage",
        "encReactionMessage",
        "pollUpdateMessage",
        "keepInChatMessage",
        "pinInChatMessage",
        "encEventResponseMessage",
        "editedMessage",
    }
)
_SKIPPED_SERVERS = frozenset({"broadcast", "newsletter"})  # status updates, broadcast lists, channels
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


@dataclass(frozen=True, slots=True)
class Content:
    """What a waE2E Message shows: its type, text or caption, media metadata, reply target."""

    type: MessageType
    text: str | None
    media: Media | None
    quoted_id: str | None
    media_ref: dict[str, Any] | None


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


def content_of(message: Any) -> Content | None:
    """The bubble a waE2E Message shows; None for protocol traffic (key shares, reactions, edits, ...)."""
    for _ in range(4):
        wrapper = next((w for w in _WRAPPERS if message.HasField(w)), None)
        if wrapper is None:
            break
        message = getattr(message, wrapper).message
    for field, kind in _MEDIA_TYPES.items():
        if message.HasField(field):
            return _media_content(message, field, kind)
    if message.HasField("extendedTextMessage"):
        ext = message.extendedTextMessage
        return Content(MessageType.TEXT, str(ext.text), None, _quoted_id(ext), None)
    if message.HasField("conversation"):
        return Content(MessageType.TEXT, str(message.conversation), None, None, None)
    fields = {descriptor.name for descriptor, _ in message.ListFields()}
    if not fields - _NOT_A_BUBBLE:
        return None
    return Content(MessageType.OTHER, None, None, None, None)


def _quoted_id(sub: Any) -> str | None:
    if sub.HasField("contextInfo") and sub.contextInfo.stanzaID:
        return str(sub.contextInfo.stanzaID)
    return None


def _media_content(message: Any, field: str, kind: MessageType) -> Content:
    sub = getattr(message, field)
    caption = str(sub.caption) if field in ("imageMessage", "videoMessage", "documentMessage") else ""
    seconds = int(sub.seconds) if field in ("videoMessage", "ptvMessage", "audioMessage") else 0
    media = Media(
        mimetype=str(sub.mimetype) or "application/octet-stream",
        file_name=(str(sub.fileName) or None) if field == "documentMessage" else None,
        size=int(sub.fileLength) or None,
        seconds=seconds or None,
        ptt=bool(sub.PTT) if field == "audioMessage" else False,
    )
    # The ref is the media sub-message alone (what download_any needs, and what a reply quotes),
    # without its own reply context.
    ref = type(message)()
    getattr(ref, field).CopyFrom(sub)
    getattr(ref, field).ClearField("contextInfo")
    media_ref = {"kind": field, "message": base64.b64encode(ref.SerializeToString()).decode()}
    return Content(kind, caption or None, media, _quoted_id(sub), media_ref)


def message_from_event(ev: Any, own_jid: str | None) -> tuple[Message, str | None] | None:
    """A live MessageEv as (Message, chat name), or None when it is not a chat bubble."""
    info, src = ev.Info, ev.Info.MessageSource
    chat = jid_str(src.Chat)
    if chat is None or chat.partition("@")[2] in _SKIPPED_SERVERS or not ev.HasField("Message"):
        return None
    content = content_of(ev.Message)
    if content is None:
        return None
    sender, sender_alt = phone_first(jid_str(src.Sender) or own_jid or "", jid_str(src.SenderAlt))
    if src.IsFromMe and is_lid(sender) and own_jid:
        sender, sender_alt = own_jid, sender
    if not src.IsGroup and is_lid(chat):
        alt = jid_str(src.RecipientAlt) if src.IsFromMe else jid_str(src.SenderAlt)
        chat = phone_first(chat, alt)[0]
    message = Message(
        id=str(info.ID),
        chat_id=chat,
        sender=sender,
        from_me=bool(src.IsFromMe),
        timestamp=from_ms(info.Timestamp),
        type=content.type,
        text=content.text,
        sender_name=str(info.Pushname) or None,
        sender_alt=sender_alt,
        media=content.media,
        quoted_id=content.quoted_id,
        media_ref=content.media_ref,
    )
    chat_name = message.sender_name if not src.IsGroup and not src.IsFromMe else None
    return message, chat_name


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
        if not raw_id or raw_id.partition("@")[2] in _SKIPPED_SERVERS:
            continue
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
        type=content.type,
        text=content.text,
        sender_name=(str(info.pushName) or pushnames.get(raw_sender) or None) if not from_me else None,
        sender_alt=alt,
        media=content.media,
        quoted_id=content.quoted_id,
        status=_HISTORY_STATUS.get(enum_name(info, "status"), MessageStatus.SENT)
        if from_me
        else MessageStatus.SENT,
        media_ref=content.media_ref,
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
