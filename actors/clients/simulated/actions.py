"""The simulated network's reactions, edits, revokes, reads and presence: both directions.

Our side (the port): `send_reaction`, `edit_message`, `revoke_message`, `send_chat_presence` are recorded
in `wa_sim.sent` as actions (`SentAction`), so the `sent` listing shows them next to messages.
The phone's side (the /simulator controls): the contact reacts, edits or deletes their message, the user
reads a chat on the phone, the contact types or goes online. Each becomes the event whatsmeow would give,
delivered at once (the controls need the session connected).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from actors.clients.simulated.content import message_id, now
from actors.clients.simulated.kinds import Contacts, not_on_whatsapp
from actors.ports import SimNetworkPort
from kernel.domain import ContactInfo, Message, Reaction, SendResult
from kernel.errors import InvalidInput, InvalidRecipient, NotOnWhatsApp, NotOwnMessage
from kernel.events import (
    CallOffered,
    ChatRead,
    ClientEvent,
    MessageEdited,
    MessageRevoked,
    PollVoted,
    Presence,
    ReactionChanged,
)
from kernel.ids import USER_SERVER, is_group, jid_user, to_jid
from kernel.message_kinds import option_hash
from kernel.simulated import SentAction, SentMessage

log = logging.getLogger(__name__)

TYPING_STATES = ("composing", "recording", "paused")
PRESENCE_STATES = (*TYPING_STATES, "available", "unavailable")


class SimulatedActions:
    """Mixed into `SimulatedClient` (which provides the attributes and helpers declared here)."""

    _sid: str
    _store: SimNetworkPort
    _online: asyncio.Event
    contacts: Contacts

    if TYPE_CHECKING:

        def _emit(self, event: ClientEvent) -> None: ...
        def _require_connected(self) -> None: ...
        def _recipient(self, to: str) -> str: ...
        def _own_jid(self) -> str: ...

    # ------------------------------------------------------------------ the port

    async def send_reaction(self, message: Message, emoji: str) -> SendResult:
        """React to `message` ("" removes our reaction)."""
        chat = self._recipient(message.chat_id)
        await self._store.record_sent(SentMessage(message.id, chat, SentAction.REACTION, text=emoji))
        return SendResult(message_id(), now())

    async def edit_message(self, message: Message, text: str) -> SendResult:
        """Replace the text of our own `message`."""
        if not message.from_me:
            raise NotOwnMessage()
        chat = self._recipient(message.chat_id)
        await self._store.record_sent(SentMessage(message.id, chat, SentAction.EDIT, text=text))
        return SendResult(message_id(), now())

    async def revoke_message(self, message: Message) -> SendResult:
        """Delete our own `message` for everyone."""
        if not message.from_me:
            raise NotOwnMessage()
        chat = self._recipient(message.chat_id)
        await self._store.record_sent(SentMessage(message.id, chat, SentAction.REVOKE))
        return SendResult(message_id(), now())

    async def send_chat_presence(self, chat_id: str, state: str) -> None:
        """Tell the contact we are composing, recording or paused."""
        if state not in TYPING_STATES:
            raise InvalidInput(f"state must be one of {', '.join(TYPING_STATES)}")
        chat = self._recipient(chat_id)
        await self._store.record_sent(SentMessage(message_id(), chat, SentAction.PRESENCE, text=state))

    async def contact_info(self, jid: str) -> ContactInfo:
        """What the network tells about a contact: names, about text, picture, whether we block them."""
        target = self._contact(jid)
        contact = self.contacts.get(target)
        return ContactInfo(
            target, contact.name, contact.push_name, contact.about, contact.blocked, contact.picture_id
        )

    async def set_blocked(self, jid: str, blocked: bool) -> None:
        """Block or unblock a contact (recorded in `sent` as a `block` / `unblock` action)."""
        target = self._contact(jid)
        self.contacts.get(target).blocked = blocked
        action = SentAction.BLOCK if blocked else SentAction.UNBLOCK
        await self._store.record_sent(SentMessage(message_id(), target, action))

    async def reject_call(self, caller: str, call_id: str) -> None:
        """Decline a call (recorded in `sent` as a `reject_call` action about the call id)."""
        target = self._chat(caller)
        await self._store.record_sent(SentMessage(call_id, target, SentAction.REJECT_CALL))

    def _contact(self, jid: str) -> str:
        self._require_connected()
        target = to_jid(jid)
        if not target.endswith("@" + USER_SERVER):
            raise InvalidRecipient(f"{target} is not a contact's number")
        if not_on_whatsapp(target):
            raise NotOnWhatsApp(f"+{jid_user(target)} is not on WhatsApp")
        return target

    # ------------------------------------------------------------------ control surface (/simulator)

    async def react(
        self, chat_id: str, message_id: str, emoji: str, from_me: bool = False
    ) -> ReactionChanged:
        """The contact (or, `from_me`, the user on the phone) reacts to a message; "" removes it."""
        chat = self._chat(chat_id)
        sender = self._own_jid() if from_me else chat
        event = ReactionChanged(chat, message_id, Reaction(sender, emoji, now()))
        self._deliver(event)
        return event

    async def edit(self, chat_id: str, message_id: str, text: str) -> MessageEdited:
        """The author edits a message (the message keeps its id)."""
        if not text.strip():
            raise InvalidInput("an edit needs text")
        event = MessageEdited(self._chat(chat_id), message_id, text, now())
        self._deliver(event)
        return event

    async def revoke(self, chat_id: str, message_id: str) -> MessageRevoked:
        """The author deletes a message for everyone."""
        event = MessageRevoked(self._chat(chat_id), message_id, now())
        self._deliver(event)
        return event

    async def read(self, chat_id: str, up_to: datetime | None = None) -> ChatRead:
        """The user reads the chat on the phone (up to `up_to`, default now)."""
        event = ChatRead(self._chat(chat_id), up_to or now())
        self._deliver(event)
        return event

    async def presence(self, chat_id: str, state: str, last_seen: datetime | None = None) -> Presence:
        """The contact types (composing, recording, paused) or goes online/offline (available,
        unavailable)."""
        if state not in PRESENCE_STATES:
            raise InvalidInput(f"state must be one of {', '.join(PRESENCE_STATES)}")
        event = Presence(self._chat(chat_id), state, last_seen)
        if self._online.is_set():  # presence is not queued while offline: it would be stale
            self._emit(event)
        return event

    async def call(self, from_: str) -> CallOffered:
        """The contact calls this number."""
        chat = self._chat(from_)
        event = CallOffered(chat, chat, f"SIMCALL{message_id()[-12:]}", now())
        self._deliver(event)
        return event

    async def vote(self, chat_id: str, message_id: str, options: list[str]) -> PollVoted:
        """The contact votes in a poll of the chat (named by its options' hashes, as WhatsApp sends
        them; no options: they take their vote back)."""
        chat = self._chat(chat_id)
        event = PollVoted(chat, message_id, chat, tuple(option_hash(o) for o in options), now())
        self._deliver(event)
        return event

    def _chat(self, chat_id: str) -> str:
        self._require_connected()
        chat = to_jid(chat_id)
        if is_group(chat):
            raise InvalidInput("the simulator's reactions, edits, reads and presence are for direct chats")
        return chat

    def _deliver(self, event: ClientEvent) -> None:
        self._emit(event)
        log.debug("session %s: the phone: %s", self._sid, event)
