"""What a user does to the inbox besides sending: read a chat, react, edit, delete for everyone, type.

Each call checks the message against the store (404 for an unknown one), needs a connected client (409),
tells WhatsApp, then journals the change like a send's own copy (`actors.writes`): the frame follows
once PostgreSQL has it. The answer is the message (or chat) as it now stands.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from actors.presence import TYPING_STATES, TypingGate
from actors.session_contacts import Contacts
from actors.session_state import SessionState
from actors.writes import StoreChatRead, StoreEdit, StoreReaction, StoreRevoke
from kernel.domain import Message, MessageType, Reaction
from kernel.errors import EditWindowClosed, InvalidInput, NotEditable, NotOwnMessage, SessionNotConnected
from kernel.ids import to_jid
from kernel.text_rules import MAX_TEXT, check_emoji

# whatsmeow's EditWindow: WhatsApp refuses edits sent later than this after the message.
EDIT_WINDOW = timedelta(minutes=15)
# Read receipts go out for at most this many of a chat's newest unread messages.
MAX_READ_RECEIPTS = 100


def revoked(message: Message) -> Message:
    """`message` deleted for everyone: what is left of it."""
    return replace(
        message,
        type=MessageType.REVOKED,
        text=None,
        media=None,
        media_ref=None,
        summary=None,
        edited_at=None,
        reactions=(),
        location=None,
        contacts=(),
        poll=None,
    )


class Inbox:
    """Reads, reactions, edits, revokes and typing of one session."""

    def __init__(self, state: SessionState, contacts: Contacts) -> None:
        self._state = state
        self._contacts = contacts
        self._typing = TypingGate()

    async def read_chat(self, chat_id: str) -> tuple[str, int]:
        """Mark the chat read: read receipts for its unread incoming messages, unread count 0.

        The chat's id (a linked LID becomes the phone number's chat) and how many messages WhatsApp got
        read receipts for.
        """
        session = self._state
        await session.wait_ready()
        jid = await self._contacts.chat(chat_id)
        client = session.client_if_connected()
        unread = await session.store.inbox.unread_incoming(jid, MAX_READ_RECEIPTS)
        if unread:
            await session.timed(client.mark_read(jid, unread))
        session.write(StoreChatRead(jid))
        return jid, len(unread)

    async def mark_read(self, chat_id: str) -> None:
        """The seed's mark-read: `read_chat`, and without a connection the unread count alone."""
        try:
            await self.read_chat(chat_id)
        except SessionNotConnected:
            self._state.write(StoreChatRead(to_jid(chat_id)))

    async def react(self, chat_id: str, message_id: str, emoji: str) -> Message:
        """React to a message of the chat (ours or theirs); "" removes our reaction."""
        check_emoji(emoji)
        session = self._state
        await session.wait_ready()
        jid = await self._contacts.chat(chat_id)
        message = await session.store.inbox.get_message(jid, message_id)
        if message.type is MessageType.REVOKED:
            raise InvalidInput("cannot react to a message that was deleted for everyone")
        client = session.client_if_connected()
        sent = await session.timed(client.send_reaction(message, emoji))
        reaction = Reaction(session.own_jid() or "me", emoji, sent.timestamp)
        session.write(StoreReaction(jid, message_id, reaction))
        kept = tuple(r for r in message.reactions if r.sender != reaction.sender)
        return replace(message, reactions=(*kept, reaction) if emoji else kept)

    async def edit(self, chat_id: str, message_id: str, text: str) -> Message:
        """Replace the text of our own text message, within WhatsApp's edit window."""
        if not text.strip() or len(text) > MAX_TEXT:
            raise InvalidInput(f"text must be 1..{MAX_TEXT} characters")
        session = self._state
        await session.wait_ready()
        jid = await self._contacts.chat(chat_id)
        message = await session.store.inbox.get_message(jid, message_id)
        if not message.from_me:
            raise NotOwnMessage()
        if message.type is not MessageType.TEXT:
            raise NotEditable()
        if datetime.now(UTC) - message.timestamp > EDIT_WINDOW:
            raise EditWindowClosed()
        client = session.client_if_connected()
        sent = await session.timed(client.edit_message(message, text))
        session.write(StoreEdit(jid, message_id, text, sent.timestamp))
        return replace(message, text=text, edited_at=sent.timestamp)

    async def revoke(self, chat_id: str, message_id: str) -> Message:
        """Delete our own message for everyone (a message already deleted stays so: no second request)."""
        session = self._state
        await session.wait_ready()
        jid = await self._contacts.chat(chat_id)
        message = await session.store.inbox.get_message(jid, message_id)
        if not message.from_me:
            raise NotOwnMessage()
        if message.type is MessageType.REVOKED:
            return message
        client = session.client_if_connected()
        await session.timed(client.revoke_message(message))
        session.write(StoreRevoke(jid, message_id))
        return revoked(message)

    async def typing(self, chat_id: str, state: str) -> bool:
        """Tell the contact we are composing, recording or paused. False: coalesced with the same state
        sent moments ago (nothing sent); RateLimited when the state changes too fast."""
        if state not in TYPING_STATES:
            raise InvalidInput(f"state must be one of {', '.join(TYPING_STATES)}")
        session = self._state
        await session.wait_ready()
        jid = await self._contacts.chat(chat_id)
        client = session.client_if_connected()
        if not self._typing.admit(jid, state):
            return False
        await session.timed(client.send_chat_presence(jid, state))
        self._typing.sent(jid, state)
        return True
