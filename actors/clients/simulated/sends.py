"""What the simulated network does with a session's sends: a collaborator of `SimulatedClient`.

Rules: a number ending in `0000` is not on WhatsApp (`NotOnWhatsApp`); one ending in `0429` is refused as
too fast (`WhatsAppRateLimited`), one ending in `0463` with the reach-out time lock (`WhatsAppRestricted`).
Every send is recorded in `wa_sim.sent`; a delivered receipt follows ~0.1 s later, a read one ~0.3 s
(a voice note: played ~0.5 s), each once the session is online.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from actors.clients.simulated.content import message_id, now
from actors.clients.simulated.kinds import Contacts, not_on_whatsapp
from actors.ports import OutgoingMedia, SimNetworkPort, VoiceNote
from actors.tasks import TaskGroup
from kernel.domain import ContactCard, Location, Message, MessageStatus, MessageType, Poll, SendResult
from kernel.errors import (
    InvalidInput,
    InvalidRecipient,
    NotOnWhatsApp,
    WaError,
    WhatsAppRateLimited,
    WhatsAppRestricted,
)
from kernel.events import ClientEvent, Receipt
from kernel.ids import USER_SERVER, is_group, jid_user, to_jid
from kernel.inbox_scope import ChatKind, chat_kind
from kernel.message_kinds import OutgoingContent, content_json, content_kind
from kernel.simulated import SentMessage

log = logging.getLogger(__name__)

MAX_POLL_OPTIONS = 12
RECEIPTS_AFTER_S = {MessageStatus.DELIVERED: 0.1, MessageStatus.READ: 0.3, MessageStatus.PLAYED: 0.5}


def network_refusal(jid: str) -> WaError | None:
    """The network's rules for its refusals: it refuses sends to a phone whose digits end in `0429` as
    too fast (whatsmeow's error 429), and to one ending in `0463` with the reach-out time lock (463)."""
    if not jid.endswith("@" + USER_SERVER):
        return None
    user = jid_user(jid)
    if user.endswith("0429"):
        return WhatsAppRateLimited(retry_after=60)
    if user.endswith("0463"):
        return WhatsAppRestricted(reason="reachout_timelock")
    return None


class SimulatedSends:
    """The network's side of every send of one session."""

    def __init__(
        self,
        store: SimNetworkPort,
        tasks: TaskGroup,
        contacts: Contacts,
        online: asyncio.Event,
        emit: Callable[[ClientEvent], None],
        require_connected: Callable[[], None],
        label: str,
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._contacts = contacts
        self._online = online
        self._emit = emit
        self._require_connected = require_connected
        self._label = label

    def recipient(self, to: str) -> str:
        """The JID a send goes to, or the network's refusal."""
        self._require_connected()
        jid = to_jid(to)
        if not jid.endswith("@" + USER_SERVER) and not is_group(jid) and not jid.endswith("@lid"):
            raise InvalidRecipient(f"cannot send to {jid}")
        if not_on_whatsapp(jid):
            raise NotOnWhatsApp(f"+{jid_user(jid)} is not on WhatsApp")
        refused = network_refusal(jid)
        if refused is not None:
            raise refused
        return jid

    async def text(self, to: str, text: str, quoted: Message | None) -> SendResult:
        return await self._send(
            SentMessage(message_id(), self.recipient(to), MessageType.TEXT, text=text), quoted
        )

    async def media(self, to: str, media: OutgoingMedia, quoted: Message | None) -> SendResult:
        jid = self.recipient(to)
        sent = SentMessage(
            message_id(),
            jid,
            media.kind,
            mimetype=media.mimetype,
            size=len(media.data),
            file_name=media.file_name,
            text=media.caption,
            data=media.data,
        )
        return await self._send(sent, quoted)

    async def voice_note(self, to: str, note: VoiceNote, quoted: Message | None) -> SendResult:
        jid = self.recipient(to)
        sent = SentMessage(
            message_id(),
            jid,
            MessageType.AUDIO,
            mimetype=note.mimetype,
            ptt=True,
            size=len(note.ogg),
            seconds=note.seconds,
            data=note.ogg,
        )
        return await self._send(sent, quoted)

    async def content(self, to: str, content: OutgoingContent) -> SendResult:
        """A location, contact card or poll."""
        if isinstance(content, Poll) and not 2 <= len(content.options) <= MAX_POLL_OPTIONS:
            raise InvalidInput(f"a poll has 2..{MAX_POLL_OPTIONS} options")
        jid = self.recipient(to)
        kind = content_kind(content)
        text = content.question if isinstance(content, Poll) else None
        stored = content_json(
            content if isinstance(content, Location) else None,
            (content,) if isinstance(content, ContactCard) else (),
            content if isinstance(content, Poll) else None,
        )
        return await self._send(SentMessage(message_id(), jid, kind, text=text, content=stored), None)

    async def _send(self, sent: SentMessage, quoted: Message | None) -> SendResult:
        if quoted is not None:
            sent = replace(sent, quoted_id=quoted.id)
        ref = None
        if sent.data is not None:
            ref = {"sim": "sent", "id": sent.message_id, "size": len(sent.data), "mimetype": sent.mimetype}
        result = SendResult(sent.message_id, now(), media_ref=ref)
        await self._store.record_sent(sent)
        played = sent.ptt
        self._tasks.spawn(self._receipts(sent.to, sent.message_id, played), f"receipts {sent.message_id}")
        log.debug("session %s: sent %s %s to %s", self._label, sent.type, sent.message_id, sent.to)
        return result

    async def _receipts(self, chat: str, mid: str, played: bool) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for status, after in RECEIPTS_AFTER_S.items():
            if status is MessageStatus.PLAYED and not played:
                return
            await asyncio.sleep(max(0.0, start + after - loop.time()))
            await self._online.wait()
            # A contact known by its LID acknowledges in the LID chat (no phone alternative).
            lid = self._contacts.get(chat).lid if chat_kind(chat) is ChatKind.DIRECT else None
            self._emit(Receipt(lid or chat, (mid,), status, now()))
