"""What a waE2E Message shows: every kind typed (text, media, location, contact cards, polls, view-once,
album children), its reply target, and a `summary` for anything that is not plain text.

Pure functions over protobuf objects: no Go call, no neonize import.
- Wrappers (ephemeral, view-once, device-sent, captioned documents, album children, ...) are unwrapped;
  a view-once wrapper marks the message `view_once` and its content is not kept (no caption, no
  media_ref: the phone shows it once, the bridge never does).
- An album's parent (`albumMessage`) is not a bubble: its children arrive as their own messages.
- `quoted_id` is the `contextInfo.stanzaID` of whichever sub-message carries the content.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any

from actors.clients.neonize import convert
from actors.media.limits import check_size
from kernel.domain import ContactCard, Location, Media, MessageType, Poll, SendResult
from kernel.errors import MediaNotAvailable
from kernel.message_kinds import summary_for

# Containers whose `.message` is the real content. The view-once ones also mark the message.
_VIEW_ONCE = ("viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension")
_WRAPPERS = (
    "ephemeralMessage",
    *_VIEW_ONCE,
    "documentWithCaptionMessage",
    "deviceSentMessage",
    "lottieStickerMessage",
    "groupMentionedMessage",
    "associatedChildMessage",  # a photo or video of an album
    "pollCreationMessageV4",
    "botInvokeMessage",
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
_POLLS = (
    "pollCreationMessage",
    "pollCreationMessageV2",
    "pollCreationMessageV3",
    "pollCreationMessageV5",
    "pollCreationMessageV6",
)
# Fields that are protocol traffic, not something a person reads: such messages produce no bubble.
NOT_A_BUBBLE = frozenset(
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
        "albumMessage",  # the album's parent: its photos and videos arrive as their own messages
        "pollAddOptionMessage",
    }
)
# Kinds we show as `other`, with what the summary says.
_OTHER_SUMMARIES = {
    "eventMessage": "📅 Event",
    "groupInviteMessage": "Group invitation",
    "call": "📞 Call",
    "callLogMesssage": "📞 Call",
    "scheduledCallCreationMessage": "📞 Scheduled call",
    "productMessage": "🛍 Product",
    "orderMessage": "🛍 Order",
    "sendPaymentMessage": "💳 Payment",
    "requestPaymentMessage": "💳 Payment request",
    "paymentInviteMessage": "💳 Payment invitation",
    "pollResultSnapshotMessage": "📊 Poll results",
    "pollResultSnapshotMessageV3": "📊 Poll results",
    "stickerPackMessage": "Sticker pack",
}


@dataclass(frozen=True, slots=True)
class Content:
    """What a waE2E Message shows; `fields()` are the matching `Message` keyword arguments."""

    type: MessageType
    text: str | None
    media: Media | None
    quoted_id: str | None
    media_ref: dict[str, Any] | None
    summary: str | None = None
    location: Location | None = None
    contacts: tuple[ContactCard, ...] = field(default=())
    poll: Poll | None = None
    view_once: bool = False

    def fields(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "text": self.text,
            "media": self.media,
            "quoted_id": self.quoted_id,
            "media_ref": self.media_ref,
            "summary": self.summary,
            "location": self.location,
            "contacts": self.contacts,
            "poll": self.poll,
            "view_once": self.view_once,
        }


def stored_media(lib: Any, ref: dict[str, Any] | None, max_bytes: int) -> Any:
    """The media submessage (image, audio…) a message's `media_ref` holds, to download; refused above
    `max_bytes` when it declares its size, MediaNotAvailable when it holds none."""
    if not ref or "message" not in ref:
        raise MediaNotAvailable()
    wa_message = lib.e2e.Message.FromString(base64.b64decode(ref["message"]))
    kind = ref.get("kind")
    check_size(convert.declared_size(wa_message, kind), max_bytes)
    if not kind or not wa_message.HasField(kind):
        raise MediaNotAvailable()
    return getattr(wa_message, kind)


def unwrap(message: Any) -> tuple[Any, bool]:
    """(the innermost content, whether a view-once wrapper was on the way)."""
    view_once = False
    for _ in range(6):
        wrapper = next((w for w in _WRAPPERS if message.HasField(w)), None)
        if wrapper is None:
            break
        view_once = view_once or wrapper in _VIEW_ONCE
        message = getattr(message, wrapper).message
    return message, view_once


def content_of(message: Any) -> Content | None:
    """The bubble a waE2E Message shows; None for protocol traffic (key shares, reactions, edits, ...)."""
    message, view_once = unwrap(message)
    for name, kind in _MEDIA_TYPES.items():
        if message.HasField(name):
            return _media(message, name, kind, view_once)
    if message.HasField("extendedTextMessage"):
        ext = message.extendedTextMessage
        return Content(MessageType.TEXT, str(ext.text), None, quoted_id(ext), None)
    if message.HasField("conversation"):
        return Content(MessageType.TEXT, str(message.conversation), None, None, None)
    typed = _typed(message)
    if typed is not None:
        return typed
    fields = {descriptor.name for descriptor, _ in message.ListFields()}
    shown = fields - NOT_A_BUBBLE
    if not shown:
        return None
    name = min(shown)
    sub = getattr(message, name)
    return Content(
        MessageType.OTHER,
        _other_text(message, name),
        None,
        quoted_id(sub) if hasattr(sub, "DESCRIPTOR") else None,
        None,
        summary=summary_for(MessageType.OTHER, other=_OTHER_SUMMARIES.get(name)),
    )


def quoted_id(sub: Any) -> str | None:
    fields = sub.DESCRIPTOR.fields_by_name
    if "contextInfo" in fields and sub.HasField("contextInfo") and sub.contextInfo.stanzaID:
        return str(sub.contextInfo.stanzaID)
    return None


def _typed(message: Any) -> Content | None:
    if message.HasField("locationMessage"):
        loc = message.locationMessage
        location = Location(
            latitude=float(loc.degreesLatitude),
            longitude=float(loc.degreesLongitude),
            name=str(loc.name) or None,
            address=str(loc.address) or None,
            url=str(loc.URL) or None,
            live=bool(loc.isLive),
        )
        return _located(location, str(loc.comment) or None, quoted_id(loc))
    if message.HasField("liveLocationMessage"):
        live = message.liveLocationMessage
        location = Location(float(live.degreesLatitude), float(live.degreesLongitude), live=True)
        return _located(location, str(live.caption) or None, quoted_id(live))
    if message.HasField("contactMessage"):
        card = message.contactMessage
        return _carded((ContactCard(str(card.displayName), str(card.vcard)),), quoted_id(card))
    if message.HasField("contactsArrayMessage"):
        arr = message.contactsArrayMessage
        cards = tuple(ContactCard(str(c.displayName), str(c.vcard)) for c in arr.contacts)
        return _carded(cards, quoted_id(arr))
    for name in _POLLS:
        if message.HasField(name):
            sub = getattr(message, name)
            poll = Poll(
                question=str(sub.name),
                options=tuple(str(o.optionName) for o in sub.options),
                selectable=int(sub.selectableOptionsCount),
            )
            summary = summary_for(MessageType.POLL, poll=poll)
            return Content(MessageType.POLL, None, None, quoted_id(sub), None, summary=summary, poll=poll)
    return None


def _located(location: Location, text: str | None, quoted: str | None) -> Content:
    summary = summary_for(MessageType.LOCATION, location=location)
    return Content(MessageType.LOCATION, text, None, quoted, None, summary=summary, location=location)


def _carded(cards: tuple[ContactCard, ...], quoted: str | None) -> Content:
    summary = summary_for(MessageType.CONTACT, contacts=cards)
    return Content(MessageType.CONTACT, None, None, quoted, None, summary=summary, contacts=cards)


def _other_text(message: Any, name: str) -> str | None:
    """Readable text some `other` kinds carry (buttons, lists, templates, invitations, events)."""
    sub = getattr(message, name)
    for attr in ("contentText", "description", "caption", "text", "name", "groupName"):
        if attr in sub.DESCRIPTOR.fields_by_name:
            value = getattr(sub, attr)
            if isinstance(value, str) and value:
                return value
    return None


def _media(message: Any, name: str, kind: MessageType, view_once: bool) -> Content:
    sub = getattr(message, name)
    caption = str(sub.caption) if name in ("imageMessage", "videoMessage", "documentMessage") else ""
    seconds = int(sub.seconds) if name in ("videoMessage", "ptvMessage", "audioMessage") else 0
    media = Media(
        mimetype=str(sub.mimetype) or "application/octet-stream",
        file_name=(str(sub.fileName) or None) if name == "documentMessage" else None,
        size=int(sub.fileLength) or None,
        seconds=seconds or None,
        ptt=bool(sub.PTT) if name == "audioMessage" else False,
        video_note=name == "ptvMessage",
    )
    summary = summary_for(kind, media=media, view_once=view_once)
    if view_once:  # marked as such; neither its caption nor a way to download it is kept
        return Content(kind, None, media, quoted_id(sub), None, summary=summary, view_once=True)
    return Content(kind, caption or None, media, quoted_id(sub), media_ref(message, name), summary=summary)


def media_ref(message: Any, name: str) -> dict[str, Any]:
    """The media sub-message alone (what a download needs, and what a reply quotes), without its own
    reply context."""
    ref = type(message)()
    getattr(ref, name).CopyFrom(getattr(message, name))
    getattr(ref, name).ClearField("contextInfo")
    return {"kind": name, "message": base64.b64encode(ref.SerializeToString()).decode()}


def own_media(sent: SendResult, message: Any) -> SendResult:
    """`sent` with the ref our own copy needs to download what we uploaded (the same form as incoming)."""
    name = next((n for n in _MEDIA_TYPES if message.HasField(n)), None)
    return replace(sent, media_ref=media_ref(message, name)) if name else sent
