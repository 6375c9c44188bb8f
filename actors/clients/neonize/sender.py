"""Us → WhatsApp through whatsmeow: a collaborator of `NeonizeClient` for messages, uploads, read
receipts and call rejections. Every Go call goes through the client's guarded `call` (bounded, tracked
until its thread returns); whatsmeow's refusals become the bridge's stable errors (`refusals`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from actors.clients.neonize import convert, kinds, outgoing, outgoing_kinds, refusals
from actors.ports import OutgoingMedia, VoiceNote
from kernel.domain import Message, SendResult
from kernel.errors import ClientError, InvalidInput, SendFailed
from kernel.ids import is_group, to_jid
from kernel.message_kinds import OutgoingContent, content_kind

log = logging.getLogger("actors.clients.neonize.client")  # the client's log, as before the split

Call = Callable[..., Awaitable[Any]]


class NeonizeSender:
    """What one neonize client sends (the client checks it is online before each)."""

    def __init__(
        self, lib: Any, native: Any, call: Call, label: str, own_jid: Callable[[], str | None]
    ) -> None:
        self._lib = lib
        self._native = native
        self._call = call
        self._label = label
        self._own_jid = own_jid

    async def text(self, jid: Any, text: str, quoted: Message | None) -> SendResult:
        return await self.send(jid, outgoing.text_message(self._lib, text, self._context(quoted)), "text")

    async def media(self, jid: Any, media: OutgoingMedia, quoted: Message | None) -> SendResult:
        up = await self._upload(media.data, outgoing.media_type(self._lib, media.kind))
        message = outgoing.media_message(self._lib, media, up, self._context(quoted))
        return kinds.own_media(await self.send(jid, message, str(media.kind)), message)

    async def voice_note(self, jid: Any, note: VoiceNote, quoted: Message | None) -> SendResult:
        up = await self._upload(note.ogg, self._lib.enums.MediaType.MediaAudio)
        message = outgoing.voice_message(self._lib, note, up, self._context(quoted))
        return kinds.own_media(await self.send(jid, message, "voice note"), message)

    async def content(self, jid: Any, content: OutgoingContent) -> SendResult:
        message = outgoing_kinds.content_message(self._lib, content)
        sent = await self.send(jid, message, str(content_kind(content)))
        return replace(sent, media_ref=outgoing_kinds.own_ref(message))

    async def mark_read(self, chat_id: str, messages: Sequence[Message]) -> None:
        chat = to_jid(chat_id)
        if any(m.chat_id != chat for m in messages):
            raise InvalidInput(f"every message marked read must belong to {chat}")
        by_sender: dict[str, list[str]] = {}
        for message in messages:
            if not message.from_me:
                by_sender.setdefault(message.sender if is_group(chat) else chat, []).append(message.id)
        for sender, ids in by_sender.items():
            try:
                await self._call(
                    self._native.mark_read,
                    *ids,
                    chat=outgoing.jid_proto(self._lib, chat),
                    sender=outgoing.jid_proto(self._lib, sender),
                    receipt=self._lib.enums.ReceiptType.READ,
                )
            except self._lib.exc.MarkReadError as err:
                raise ClientError(f"mark read failed: {err}") from err

    async def reject_call(self, caller: str, call_id: str) -> None:
        try:
            await self._call(self._native.reject_call, outgoing.jid_proto(self._lib, caller), call_id)
        except self._lib.exc.NeonizeError as err:
            raise ClientError(f"rejecting the call failed: {err}") from err
        log.info("session %s: call %s declined", self._label, call_id)

    async def send(self, jid: Any, message: Any, what: str) -> SendResult:
        try:
            resp = await self._call(self._native.send_message, jid, message)
        except self._lib.exc.NeonizeError as err:
            refused = refusals.refusal(str(err))
            if refused is not None:
                log.warning("session %s: WhatsApp refused a %s: %s", self._label, what, err)
                raise refused from err
            if isinstance(err, self._lib.exc.SendMessageError):
                raise SendFailed(str(err)) from err
            raise ClientError(f"send failed: {err}") from err
        sent_at = convert.from_s(resp.Timestamp) if resp.Timestamp else datetime.now(UTC)
        log.info("session %s: sent %s %s to %s@%s", self._label, what, resp.ID, jid.User, jid.Server)
        return SendResult(str(resp.ID), sent_at)

    def _context(self, quoted: Message | None) -> Any | None:
        if quoted is None:
            return None
        return outgoing.reply_context(self._lib, quoted, self._own_jid())

    async def _upload(self, data: bytes, media_type: Any) -> Any:
        try:
            return await self._call(self._native.upload, data, media_type)
        except self._lib.exc.UploadError as err:
            raise SendFailed(f"media upload failed: {err}") from err
        except self._lib.exc.NeonizeError as err:
            raise ClientError(f"media upload failed: {err}") from err
