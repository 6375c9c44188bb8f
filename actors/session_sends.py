"""A session's sends: text, media and voice notes, each at most once per Idempotency-Key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from actors.ports import OutgoingMedia, WhatsAppClient
from actors.session_contacts import SessionContacts
from actors.spool import SpoolFull
from actors.writes import StoreMessage
from kernel.domain import Message, MessageType, SendResult, SessionStatus
from kernel.errors import ClientTimeout, InvalidInput, MediaTooLarge, SessionNotConnected
from kernel.ids import jid_user, to_jid
from kernel.message_kinds import summary_for
from kernel.text_rules import MAX_TEXT

T = TypeVar("T")


class SessionSends(SessionContacts):
    """The three sends and what they share (a connected client, a timed call, our stored copy)."""

    def _client_if_connected(self) -> WhatsAppClient:
        if self._view is None or self._view.status != SessionStatus.CONNECTED or self._client is None:
            raise SessionNotConnected()
        return self._client

    async def _timed(self, call: Awaitable[T]) -> T:
        """A client call, counted: consecutive ClientTimeouts make the session report itself stuck."""
        try:
            result = await call
        except ClientTimeout:
            self._client_timeouts += 1
            raise
        self._client_timeouts = 0
        return result

    def _own_message(self, sent: SendResult, to: str, **fields: Any) -> None:
        me = self._row.device_jid if self._row and self._row.device_jid else None
        sender = f"{jid_user(me)}@s.whatsapp.net" if me else "me"
        # Our copy keeps the upload's reference: our own media downloads like anyone's.
        summary = summary_for(fields.get("type", MessageType.TEXT), media=fields.get("media"))
        message = Message(
            id=sent.id,
            chat_id=to,
            sender=sender,
            from_me=True,
            timestamp=sent.timestamp,
            media_ref=sent.media_ref,
            summary=summary,
            **fields,
        )
        try:
            self._write(StoreMessage(message, None, count_unread=False))
        except SpoolFull:
            pass  # WhatsApp took it: the send succeeded; only our copy is missing (logged)

    async def _quoted(self, chat_id: str, quoted_id: str | None) -> Message | None:
        return await self._store.inbox.get_message(chat_id, quoted_id) if quoted_id else None

    async def _send(
        self, key: str | None, request: tuple[Any, ...], send: Callable[[], Awaitable[SendResult]]
    ) -> SendResult:
        await self.wait_ready()
        assert self._ledger is not None
        return await self._ledger.run(key, request, send)

    async def send_text(
        self, to: str, text: str, quoted_id: str | None = None, idempotency_key: str | None = None
    ) -> SendResult:
        if not text.strip() or len(text) > MAX_TEXT:
            raise InvalidInput(f"text must be 1..{MAX_TEXT} characters")
        jid = self._canon(to_jid(to))  # a LID we know the number of: the number's chat

        async def send() -> SendResult:
            client = self._client_if_connected()
            quoted = await self._quoted(jid, quoted_id)
            sent = await self._timed(client.send_text(jid, text, quoted=quoted))
            self._own_message(sent, jid, text=text, quoted_id=quoted_id)
            return sent

        return await self._send(idempotency_key, ("text", jid, text, quoted_id), send)

    async def send_media(
        self,
        to: str,
        data: bytes,
        *,
        file_name: str | None,
        mimetype: str | None,
        caption: str | None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        from actors import media as media_mod

        if len(data) > self._config.max_media_bytes:
            raise MediaTooLarge(limit=self._config.max_media_bytes)
        jid = self._canon(to_jid(to))  # a LID we know the number of: the number's chat

        async def send() -> SendResult:
            client = self._client_if_connected()
            outgoing: OutgoingMedia = media_mod.outgoing_media(data, mimetype, file_name, caption)
            sent = await self._timed(client.send_media(jid, outgoing))
            info = media_mod.media_info(outgoing)
            self._own_message(sent, jid, type=outgoing.kind, text=caption, media=info)
            return sent

        return await self._send(idempotency_key, ("media", jid, data, file_name, mimetype, caption), send)

    async def send_voice_note(self, to: str, data: bytes, idempotency_key: str | None = None) -> SendResult:
        from actors import media as media_mod

        if len(data) > self._config.max_media_bytes:
            raise MediaTooLarge(limit=self._config.max_media_bytes)
        jid = self._canon(to_jid(to))  # a LID we know the number of: the number's chat

        async def send() -> SendResult:
            client = self._client_if_connected()
            note = await asyncio.to_thread(media_mod.to_voice_note, data)
            sent = await self._timed(client.send_voice_note(jid, note))
            self._own_message(sent, jid, type=MessageType.AUDIO, media=media_mod.voice_note_info(note))
            return sent

        return await self._send(idempotency_key, ("voice", jid, data), send)
