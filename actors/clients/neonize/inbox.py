"""Reactions, edits, revokes, reads elsewhere and presence on neonize: events in, messages out.

In (pure functions over neonize's protobufs, like `convert`):
- a MessageEv carrying `reactionMessage` → `ReactionChanged` (the reactor is the event's sender; "" text
  removes); `protocolMessage` REVOKE → `MessageRevoked`; MESSAGE_EDIT (bare, or inside `editedMessage`,
  as whatsmeow leaves it) → `MessageEdited` with the new text or caption;
- a ReceiptEv of type READ_SELF (or READ from one of our own devices): the user read the chat on the
  phone → `ChatRead` up to the receipt's time. neonize 0.5.2 forwards no app-state events
  (`MarkChatAsRead` is not among `neonize.events`), so own read receipts are what tell us;
- ChatPresenceEv → `Presence` composing / recording (COMPOSING with AUDIO media) / paused; PresenceEv →
  `Presence` available / unavailable with `lastSeen`.
Chat ids follow `convert.message_from_event`: a 1:1 chat addressed by LID becomes the phone JID when the
event carries it; chats the inbox does not hold (`kernel.inbox_scope`) produce nothing.

Out: the waE2E messages whatsmeow's BuildReaction / BuildEdit / BuildRevoke make, built here (no FFI call
to build them; tests compare them with neonize's builders), sent through `send_message` as neonize's own
`edit_message` / `revoke_message` do. The first typing state also sends presence `available` (as
WhatsApp Web does while in use; whatsmeow's documentation says WhatsApp sends presence only to clients
marked online), and typing in a chat subscribes to that contact's online state (whatsmeow delivers
PresenceEv for subscribed contacts).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from actors.clients.neonize.convert import enum_name, from_ms, from_s, is_lid, jid_str, phone_first
from actors.clients.neonize.runtime import Lib
from kernel.domain import Message, Reaction, SendResult
from kernel.errors import ClientError, InvalidInput, NotOwnMessage
from kernel.events import ChatRead, ClientEvent, MessageEdited, MessageRevoked, Presence, ReactionChanged
from kernel.ids import is_group
from kernel.inbox_scope import ChatKind, chat_kind

log = logging.getLogger(__name__)

# Containers whose `.message` holds the reaction or protocol message (disappearing chats, own devices).
_WRAPPERS = ("ephemeralMessage", "deviceSentMessage", "editedMessage")
TYPING_STATES = ("composing", "recording", "paused")
MAX_WATCHED = 500  # contacts whose online state one process subscribes to, at most


# ---------------------------------------------------------------------- in


def _chat(src: Any) -> str | None:
    """The chat of a MessageSource as the inbox keys it, or None for a chat it does not hold."""
    chat = jid_str(src.Chat)
    if chat is None:
        return None
    kind = chat_kind(chat)
    if kind not in (ChatKind.DIRECT, ChatKind.GROUP):
        return None
    if kind is ChatKind.DIRECT and is_lid(chat):
        alt = jid_str(src.RecipientAlt) if src.IsFromMe else jid_str(src.SenderAlt)
        chat = phone_first(chat, alt)[0]
    return chat


def _unwrap(message: Any) -> Any:
    for _ in range(4):
        wrapper = next((w for w in _WRAPPERS if message.HasField(w)), None)
        if wrapper is None:
            return message
        message = getattr(message, wrapper).message
    return message


def _edited_text(message: Any) -> str | None:
    """The text (or caption) of an edit's new content."""
    message = _unwrap(message)
    if message.HasField("conversation"):
        return str(message.conversation)
    if message.HasField("extendedTextMessage"):
        return str(message.extendedTextMessage.text)
    for field in ("imageMessage", "videoMessage", "documentMessage"):
        if message.HasField(field):
            return str(getattr(message, field).caption)
    return None


def message_action(ev: Any, own_jid: str | None) -> ClientEvent | None:
    """The reaction, edit or revoke a MessageEv carries, or None when it carries none of them."""
    if not ev.HasField("Message"):
        return None
    content = _unwrap(ev.Message)
    is_reaction = content.HasField("reactionMessage")
    if not is_reaction and not content.HasField("protocolMessage"):
        return None
    info, src = ev.Info, ev.Info.MessageSource
    chat = _chat(src)
    if chat is None:
        return None
    if is_reaction:
        reaction = content.reactionMessage
        sender, _alt = phone_first(jid_str(src.Sender) or own_jid or "", jid_str(src.SenderAlt))
        if src.IsFromMe and own_jid:
            sender = own_jid
        at = from_ms(reaction.senderTimestampMS) if reaction.senderTimestampMS else from_ms(info.Timestamp)
        return ReactionChanged(chat, str(reaction.key.ID), Reaction(sender, str(reaction.text), at))
    protocol = content.protocolMessage
    kind = enum_name(protocol, "type")
    if kind == "REVOKE" and protocol.key.ID:
        return MessageRevoked(chat, str(protocol.key.ID), from_ms(info.Timestamp))
    if kind == "MESSAGE_EDIT" and protocol.key.ID and protocol.HasField("editedMessage"):
        text = _edited_text(protocol.editedMessage)
        if text is None:
            return None
        at = from_ms(protocol.timestampMS) if protocol.timestampMS else from_ms(info.Timestamp)
        return MessageEdited(chat, str(protocol.key.ID), text, at)
    return None


def own_read(ev: Any) -> ChatRead | None:
    """A ReceiptEv saying the user read the chat on another of their devices, or None."""
    kind = enum_name(ev, "Type")
    src = ev.MessageSource
    if kind != "READ_SELF" and not (kind == "READ" and src.IsFromMe):
        return None
    chat = _chat(src)
    if chat is None:
        return None
    return ChatRead(chat, from_s(ev.Timestamp) if ev.Timestamp else None)


def chat_presence(ev: Any) -> Presence | None:
    """A ChatPresenceEv (typing in a chat) as `Presence`, or None for a chat the inbox does not hold."""
    src = ev.MessageSource
    if src.IsFromMe:
        return None
    chat = _chat(src)
    if chat is None:
        return None
    state = enum_name(ev, "State")
    if state == "COMPOSING":
        return Presence(chat, "recording" if enum_name(ev, "Media") == "AUDIO" else "composing")
    return Presence(chat, "paused")


def presence(ev: Any) -> Presence | None:
    """A PresenceEv (a contact online or offline) as `Presence` in their direct chat."""
    jid = jid_str(ev.From)
    if jid is None or chat_kind(jid) is not ChatKind.DIRECT:
        return None
    last_seen = from_s(ev.LastSeen) if ev.Unavailable and ev.LastSeen > 0 else None
    return Presence(jid, "unavailable" if ev.Unavailable else "available", last_seen)


# ---------------------------------------------------------------------- out


def _key(message: Message) -> dict[str, Any]:
    """whatsmeow's BuildMessageKey: someone else's message in a group names its author."""
    key: dict[str, Any] = {"remoteJID": message.chat_id, "fromMe": message.from_me, "ID": message.id}
    if is_group(message.chat_id) and not message.from_me:
        key["participant"] = message.sender
    return key


def reaction_message(lib: Lib, message: Message, emoji: str) -> Any:
    """What whatsmeow's BuildReaction makes: our reaction (`""` removes it) to `message`."""
    return lib.e2e.Message(
        reactionMessage=lib.e2e.ReactionMessage(
            key=_key(message), text=emoji, senderTimestampMS=int(time.time() * 1000)
        )
    )


def edit_message(lib: Lib, message: Message, text: str) -> Any:
    """What whatsmeow's BuildEdit makes: our `message` with `text` instead (it keeps its id)."""
    protocol = lib.e2e.ProtocolMessage(
        key={"remoteJID": message.chat_id, "fromMe": True, "ID": message.id},
        type=lib.e2e.ProtocolMessage.MESSAGE_EDIT,
        editedMessage=lib.e2e.Message(conversation=text),
        timestampMS=int(time.time() * 1000),
    )
    return lib.e2e.Message(
        editedMessage=lib.e2e.FutureProofMessage(message=lib.e2e.Message(protocolMessage=protocol))
    )


def revoke_message(lib: Lib, message: Message) -> Any:
    """What whatsmeow's BuildRevoke makes for our own `message`: deleted for everyone."""
    protocol = lib.e2e.ProtocolMessage(
        key={"remoteJID": message.chat_id, "fromMe": True, "ID": message.id},
        type=lib.e2e.ProtocolMessage.REVOKE,
    )
    return lib.e2e.Message(protocolMessage=protocol)


class NeonizeActions:
    """The port's reaction, edit, revoke and typing calls; mixed into `NeonizeClient`."""

    _lib: Lib
    _native: Any
    _own_jid: str | None
    _announced = False  # we told WhatsApp we are online (it then sends us the contacts' typing)
    _watched: frozenset[str] = frozenset()  # contacts whose online state we subscribed to

    if TYPE_CHECKING:

        def _recipient(self, to: str) -> Any: ...
        async def _send(self, jid: Any, message: Any, what: str) -> SendResult: ...
        async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...

    async def send_reaction(self, message: Message, emoji: str) -> SendResult:
        jid = self._recipient(message.chat_id)
        return await self._send(jid, reaction_message(self._lib, message, emoji), "reaction")

    async def edit_message(self, message: Message, text: str) -> SendResult:
        if not message.from_me:
            raise NotOwnMessage()
        jid = self._recipient(message.chat_id)
        return await self._send(jid, edit_message(self._lib, message, text), "edit")

    async def revoke_message(self, message: Message) -> SendResult:
        if not message.from_me:
            raise NotOwnMessage()
        jid = self._recipient(message.chat_id)
        return await self._send(jid, revoke_message(self._lib, message), "revoke")

    async def send_chat_presence(self, chat_id: str, state: str) -> None:
        if state not in TYPING_STATES:
            raise InvalidInput(f"state must be one of {', '.join(TYPING_STATES)}")
        jid = self._recipient(chat_id)
        enums = self._lib.enums
        presence = enums.ChatPresence.CHAT_PRESENCE_PAUSED
        if state != "paused":
            presence = enums.ChatPresence.CHAT_PRESENCE_COMPOSING
        media = enums.ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
        if state == "recording":
            media = enums.ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO
        try:
            if not self._announced:
                # As WhatsApp Web does when the user is active: online, so typing states flow both ways.
                await self._call(self._native.send_presence, enums.Presence.AVAILABLE)
                self._announced = True
            await self._call(self._native.send_chat_presence, jid, presence, media)
        except self._lib.exc.NeonizeError as err:
            raise ClientError(f"typing state not sent: {err}") from err
        await self._watch(jid)

    async def _watch(self, jid: Any) -> None:
        """Subscribe to the contact's online state (as WhatsApp Web does for the chat in use), once."""
        key = f"{jid.User}@{jid.Server}"
        if key in self._watched or is_group(key) or len(self._watched) >= MAX_WATCHED:
            return
        try:
            await self._call(self._native.subscribe_presence, jid)
        except self._lib.exc.NeonizeError as err:
            log.info("presence of %s not subscribed: %s", key, err)
            return
        self._watched = self._watched | {key}


__all__ = [
    "NeonizeActions",
    "chat_presence",
    "edit_message",
    "message_action",
    "own_read",
    "presence",
    "reaction_message",
    "revoke_message",
]
