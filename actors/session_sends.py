"""A session's sends: text, media, voice notes, locations, contact cards and polls, each at most once per
Idempotency-Key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from actors.journal import Journal
from actors.ledger import SendLedger
from actors.pace import Pace
from actors.ports import OutgoingMedia
from actors.reach import Reach
from actors.session_contacts import Contacts
from actors.session_state import SessionState
from actors.spool import SpoolFull
from actors.writes import StoreMessage
from kernel.domain import ContactCard, Location, Message, MessageType, Reason, SendResult, SessionStatus
from kernel.errors import InvalidInput, MediaTooLarge, SessionNotConnected, WhatsAppRestricted
from kernel.ids import to_jid
from kernel.message_kinds import OutgoingContent, content_kind, summary_for
from kernel.text_rules import MAX_TEXT, MAX_TYPING_MS


class Sends:
    """The three sends and what they share (a connected client, a timed call, our stored copy)."""

    def __init__(self, state: SessionState, contacts: Contacts) -> None:
        self._state = state
        self._contacts = contacts
        self.reach = Reach(state.client_if_connected, state.timed)
        self._ledger: SendLedger | None = None  # made at boot: it journals each key (`load`)
        self._pace = Pace(state.config.send_per_minute, state.config.send_burst)

    async def load(self, journal: Journal, user_id: str) -> None:
        """At boot, once the journal is open and the row read: remember this session's recent keys."""
        self._ledger = SendLedger(self._state.session_id, self._state.store.send_records, journal)
        await self._ledger.load(user_id)

    def _own_message(self, sent: SendResult, to: str, **fields: Any) -> None:
        own = self._state.own_jid()
        # Our copy keeps the upload's reference: our own media downloads like anyone's.
        summary = summary_for(
            fields.get("type", MessageType.TEXT),
            media=fields.get("media"),
            location=fields.get("location"),
            contacts=fields.get("contacts", ()),
            poll=fields.get("poll"),
        )
        message = Message(
            id=sent.id,
            chat_id=to,
            sender=own or "me",
            from_me=True,
            timestamp=sent.timestamp,
            media_ref=sent.media_ref,
            summary=summary,
            **fields,
        )
        try:
            self._state.write(StoreMessage(message, None, count_unread=False))
        except SpoolFull:
            pass  # WhatsApp took it: the send succeeded; only our copy is missing (logged)

    async def _send(
        self,
        key: str | None,
        request: tuple[Any, ...],
        send: Callable[[], Awaitable[SendResult]],
        typing_ms: int = 0,
        typing: str = "composing",
    ) -> SendResult:
        """`send()` within the pace, to a number on WhatsApp, after `typing_ms` of "typing…" (`typing`: the
        chat state shown) in the chat, at most once per key. `request` is (kind, jid, what is sent...)."""
        await self._state.wait_ready()
        assert self._ledger is not None  # made before the row shows: see Lifecycle._load
        pace = self._pace

        async def paced() -> SendResult:
            pace.take()  # only a send that goes out spends: a retried key returns from the ledger
            try:
                await self.reach.require(request[1])  # never write to a number without an account
                if typing_ms > 0:
                    await self._type(request[1], typing_ms, typing)
                return await send()
            except (InvalidInput, SessionNotConnected):
                pace.give_back()  # refused before anything went out
                raise
            except WhatsAppRestricted:
                await self._restricted()
                raise

        return await self._ledger.run(key, request, paced)

    async def send_text(
        self,
        to: str,
        text: str,
        quoted_id: str | None = None,
        idempotency_key: str | None = None,
        typing_ms: int = 0,
    ) -> SendResult:
        if not text.strip() or len(text) > MAX_TEXT:
            raise InvalidInput(f"text must be 1..{MAX_TEXT} characters")
        jid = self._contacts.canon(to_jid(to))  # a LID we know the number of: the number's chat
        session = self._state

        async def send() -> SendResult:
            client = session.client_if_connected()
            quoted = await session.store.inbox.get_message(jid, quoted_id) if quoted_id else None
            sent = await session.timed(client.send_text(jid, text, quoted=quoted))
            self._own_message(sent, jid, text=text, quoted_id=quoted_id)
            return sent

        return await self._send(idempotency_key, ("text", jid, text, quoted_id), send, typing_ms)

    async def send_media(
        self,
        to: str,
        data: bytes,
        *,
        file_name: str | None,
        mimetype: str | None,
        caption: str | None,
        idempotency_key: str | None = None,
        typing_ms: int = 0,
    ) -> SendResult:
        from actors import media as media_mod

        session = self._state
        if len(data) > session.config.max_media_bytes:
            raise MediaTooLarge(limit=session.config.max_media_bytes)
        jid = self._contacts.canon(to_jid(to))  # a LID we know the number of: the number's chat

        async def send() -> SendResult:
            client = session.client_if_connected()
            outgoing: OutgoingMedia = media_mod.outgoing_media(data, mimetype, file_name, caption)
            sent = await session.timed(client.send_media(jid, outgoing))
            info = media_mod.media_info(outgoing)
            self._own_message(sent, jid, type=outgoing.kind, text=caption, media=info)
            return sent

        request = ("media", jid, data, file_name, mimetype, caption)
        return await self._send(idempotency_key, request, send, typing_ms)

    async def send_voice_note(
        self, to: str, data: bytes, idempotency_key: str | None = None, typing_ms: int = 0
    ) -> SendResult:
        """A voice note; `typing_ms` shows "recording audio…" first, as a person recording one would."""
        from actors import media as media_mod

        session = self._state
        if len(data) > session.config.max_media_bytes:
            raise MediaTooLarge(limit=session.config.max_media_bytes)
        jid = self._contacts.canon(to_jid(to))  # a LID we know the number of: the number's chat

        async def send() -> SendResult:
            client = session.client_if_connected()
            note = await asyncio.to_thread(media_mod.to_voice_note, data)
            sent = await session.timed(client.send_voice_note(jid, note))
            self._own_message(sent, jid, type=MessageType.AUDIO, media=media_mod.voice_note_info(note))
            return sent

        return await self._send(idempotency_key, ("voice", jid, data), send, typing_ms, "recording")

    async def _restricted(self) -> None:
        """WhatsApp restricts the number: its status says so (still connected) with a `status` frame."""
        session = self._state
        view = session.view
        if view is not None and view.status is SessionStatus.CONNECTED and view.reason is None:
            await session.set_state(SessionStatus.CONNECTED, Reason.RESTRICTED)

    async def _type(self, jid: str, typing_ms: int, state: str) -> None:
        """Show "typing…" (or "recording audio…") in the chat for `typing_ms`, as a person would."""
        session = self._state
        await session.timed(session.client_if_connected().send_chat_presence(jid, state))
        await asyncio.sleep(min(typing_ms, MAX_TYPING_MS) / 1000)

    async def send_content(
        self, to: str, content: OutgoingContent, idempotency_key: str | None = None, typing_ms: int = 0
    ) -> SendResult:
        """A location, a contact card or a poll."""
        jid = self._contacts.canon(to_jid(to))  # a LID we know the number of: the number's chat
        session = self._state
        kind = content_kind(content)

        async def send() -> SendResult:
            client = session.client_if_connected()
            if isinstance(content, Location):
                sent = await session.timed(client.send_location(jid, content))
                self._own_message(sent, jid, type=kind, location=content)
            elif isinstance(content, ContactCard):
                sent = await session.timed(client.send_contact(jid, content))
                self._own_message(sent, jid, type=kind, contacts=(content,))
            else:
                sent = await session.timed(client.send_poll(jid, content))
                self._own_message(sent, jid, type=kind, poll=content)
            return sent

        return await self._send(idempotency_key, (str(kind), jid, content), send, typing_ms)
