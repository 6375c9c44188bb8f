"""What a user does to the inbox besides sending: read a chat, react, edit, delete for everyone, type.

Each call checks the message against the store (404 for an unknown one), needs a connected client (409),
tells WhatsApp, then journals the change like a send's own copy (`actors.writes`): the frame follows
once PostgreSQL has it. The answer is the message (or chat) as it now stands.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from actors.presence import TYPING_STATES, TypingGate
from actors.session_contacts import SessionContacts
from actors.session_sends import SessionSends
from actors.writes import StoreChatRead, StoreEdit, StoreReaction, StoreRevoke
from kernel.domain import Message, MessageType, Reaction
from kernel.errors import EditWindowClosed, InvalidInput, NotEditable, NotOwnMessage
from kernel.ids import jid_user, to_jid
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


class SessionInbox(SessionSends, SessionContacts):
    """Reads, reactions, edits, revokes and typing of one session."""

    _typing: TypingGate | None = None

    async def _chat(self, chat_id: str) -> str:
        """The chat as the store keys it: a LID linked to a phone number is that number's chat."""
        jid = to_jid(chat_id)
        return (await self._ensure_links()).get(jid, jid)

    def _me(self) -> str:
        me = self._row.device_jid if self._row and self._row.device_jid else None
        return f"{jid_user(me)}@s.whatsapp.net" if me else "me"

    async def read_chat(self, chat_id: str) -> tuple[str, int]:
        """Mark the chat read: read receipts for its unread incoming messages, unread count 0.

        The chat's id (a linked LID becomes the phone number's chat) and how many messages WhatsApp got
        read receipts for.
        """
        await self.wait_ready()
        jid = await self._chat(chat_id)
        client = self._client_if_connected()
        unread = await self._store.inbox.unread_incoming(jid, MAX_READ_RECEIPTS)
        if unread:
            await self._timed(client.mark_read(jid, unread))
        self._write(StoreChatRead(jid))
        return jid, len(unread)

    async def react(self, chat_id: str, message_id: str, emoji: str) -> Message:
        """React to a message of the chat (ours or theirs); "" removes our reaction."""
        check_emoji(emoji)
        await self.wait_ready()
        jid = await self._chat(chat_id)
        message = await self._store.inbox.get_message(jid, message_id)
        if message.type is MessageType.REVOKED:
            raise InvalidInput("cannot react to a message that was deleted for everyone")
        client = self._client_if_connected()
        sent = await self._timed(client.send_reaction(message, emoji))
        reaction = Reaction(self._me(), emoji, sent.timestamp)
        self._write(StoreReaction(jid, message_id, reaction))
        kept = tuple(r for r in message.reactions if r.sender != reaction.sender)
        return replace(message, reactions=(*kept, reaction) if emoji else kept)

    async def edit(self, chat_id: str, message_id: str, text: str) -> Message:
        """Replace the text of our own text message, within WhatsApp's edit window."""
        if not text.strip() or len(text) > MAX_TEXT:
            raise InvalidInput(f"text must be 1..{MAX_TEXT} characters")
        await self.wait_ready()
        jid = await self._chat(chat_id)
        message = await self._store.inbox.get_message(jid, message_id)
        if not message.from_me:
            raise NotOwnMessage()
        if message.type is not MessageType.TEXT:
            raise NotEditable()
        if datetime.now(UTC) - message.timestamp > EDIT_WINDOW:
            raise EditWindowClosed()
        client = self._client_if_connected()
        sent = await self._timed(client.edit_message(message, text))
        self._write(StoreEdit(jid, message_id, text, sent.timestamp))
        return replace(message, text=text, edited_at=sent.timestamp)

    async def revoke(self, chat_id: str, message_id: str) -> Message:
        """Delete our own message for everyone (a message already deleted stays so: no second request)."""
        await self.wait_ready()
        jid = await self._chat(chat_id)
        message = await self._store.inbox.get_message(jid, message_id)
        if not message.from_me:
            raise NotOwnMessage()
        if message.type is MessageType.REVOKED:
            return message
        client = self._client_if_connected()
        await self._timed(client.revoke_message(message))
        self._write(StoreRevoke(jid, message_id))
        return revoked(message)

    async def typing(self, chat_id: str, state: str) -> bool:
        """Tell the contact we are composing, recording or paused. False: coalesced with the same state
        sent moments ago (nothing sent); RateLimited when the state changes too fast."""
        if state not in TYPING_STATES:
            raise InvalidInput(f"state must be one of {', '.join(TYPING_STATES)}")
        await self.wait_ready()
        jid = await self._chat(chat_id)
        client = self._client_if_connected()
        if self._typing is None:
            self._typing = TypingGate()
        if not self._typing.admit(jid, state):
            return False
        await self._timed(client.send_chat_presence(jid, state))
        self._typing.sent(jid, state)
        return True
