"""A session's transitions: what each WhatsApp event does, and the watchdogs that end a stalled step.

The order every transition follows is in `actors.session`'s docstring.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime

from actors.presence import PresenceGate
from actors.session_base import PAIRING_SETTLE_S, STORED_WAIT_S
from actors.session_contacts import SessionContacts
from actors.writes import (
    ClearDevice,
    SaveCounters,
    SaveLastSeen,
    SaveProfile,
    StoreChatRead,
    StoreEdit,
    StoreHistory,
    StoreMessage,
    StoreReaction,
    StoreReceipt,
    StoreRevoke,
)
from kernel.domain import TERMINAL_REASONS, Reason, SessionStatus
from kernel.events import (
    ChatRead,
    ClientEvent,
    Connected,
    ContactName,
    Disconnected,
    HistoryChunk,
    IdentityLink,
    LoggedOut,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    Paired,
    PairingCode,
    PictureChanged,
    Presence,
    QrCode,
    ReactionChanged,
    Receipt,
)
from kernel.wire import presence_payload, qr_payload

log = logging.getLogger(__name__)


class SessionTransitions(SessionContacts):
    """Event handlers and watchdogs."""

    async def _phone_taken(self, entry: SaveProfile, err: Exception) -> None:
        """The phone just paired is held by another session: unlink this device and start afresh."""
        log.warning("session %s: %s is paired to another session; unlinking", self.session_id, entry.phone)
        # Said before `_closing` silences state changes; the next round's `connecting` clears it.
        self._update(phone=None, display_name=None)  # the row never took this phone
        await self._set_state(SessionStatus.DISCONNECTED, Reason.PHONE_IN_USE)
        self._settle_pairing(err)
        self._closing = True  # e.g. the Connected that follows Paired must not show this session up
        await self._store.clear_device()
        if self._client is not None and self._client_running:
            await self._client.logout()
        # Let the scan's 409 reach the caller before this process goes.
        self._tasks.spawn(self._recycle_later(0.5, "phone already paired elsewhere"), "recycle")

    # ------------------------------------------------------------------ watchdog

    def _arm(self, after_s: float, why: str, action: str = "recycle") -> None:
        self._disarm()
        self._watchdog = self._tasks.spawn(self._fire(after_s, why, action), f"watchdog ({why})")

    def _disarm(self) -> None:
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self._watchdog = None

    async def _fire(self, after_s: float, why: str, action: str) -> None:
        await asyncio.sleep(after_s)
        self._watchdog = None
        if action == "qr_round":
            await self._qr_round_ended()
        elif action == "dial_failed":
            await self._dial_failed(why)
        else:
            await self.recycle(why)

    async def _dial_failed(self, why: str) -> None:
        """A dial or reconnect that never finished: counted like a refused one, so the next waits."""
        self._count_connect_failure()
        await self.recycle(why)

    def _count_connect_failure(self) -> int:
        failures = (self._row.connect_failures if self._row else 0) + 1
        self._write(SaveCounters(connect_failures=failures))
        if self._row is not None:
            self._row = replace(self._row, connect_failures=failures)
        return failures

    async def _qr_round_ended(self) -> None:
        assert self._row is not None
        rounds = self._row.qr_rounds + 1
        self._write(SaveCounters(qr_rounds=rounds))
        self._row = replace(self._row, qr_rounds=rounds)
        if rounds >= self._config.qr_max_rounds:
            log.info("session %s: %d pairing rounds ended unscanned: qr_timeout", self.session_id, rounds)
            await self._set_state(SessionStatus.DISCONNECTED, Reason.QR_TIMEOUT)
            await self._stop_client()
            return
        await self.recycle(f"pairing round {rounds} ended unscanned")

    # ------------------------------------------------------------------ events

    async def _handle(self, event: ClientEvent) -> None:
        in_inbox = await self._in_inbox(event)  # chat ids mapped to phone numbers; other chats dropped
        if in_inbox is None:
            return
        event = in_inbox
        match event:
            case QrCode(code, expires_at):
                await self._on_qr(code, expires_at)
            case PairingCode(code, _phone):
                self._update(pairing_code=code)
            case Paired(device_jid, phone, push_name):
                await self._on_paired(device_jid, phone, push_name)
            case Connected(push_name, pic):
                await self._on_connected(push_name, pic)
            case Disconnected(reason, retrying, retry_after_s):
                await self._on_disconnected(reason, retrying, retry_after_s)
            case LoggedOut(reason):
                await self._on_logged_out(reason)
            case MessageReceived(message, chat_name):
                self._write(StoreMessage(message, chat_name, count_unread=not message.from_me))
                self._after_message(message)
            case ContactName(jid, name, source):
                self._on_contact_name(jid, name, source)
            case IdentityLink(lid, pn):
                await self._on_identity_link(lid, pn)
            case PictureChanged(jid):
                self._on_picture_changed(jid)
            case HistoryChunk():
                self._write(StoreHistory(event))
                log.info(
                    "session %s: history chunk with %d chats received",
                    self.session_id,
                    len(event.conversations),
                )
            case Receipt(chat_id, ids, status, _ts):
                self._write(StoreReceipt(chat_id, ids, status))
            case ReactionChanged(chat_id, message_id, reaction):
                reaction = replace(reaction, sender=self._canon(reaction.sender))
                self._write(StoreReaction(chat_id, message_id, reaction))
            case MessageEdited(chat_id, message_id, text, edited_at):
                self._write(StoreEdit(chat_id, message_id, text, edited_at))
            case MessageRevoked(chat_id, message_id, _ts):
                self._write(StoreRevoke(chat_id, message_id))
            case ChatRead(chat_id, up_to):
                self._write(StoreChatRead(chat_id, up_to))
            case Presence(chat_id, state, last_seen):
                await self._presence_gate().offer(chat_id, state, last_seen)

    def _presence_gate(self) -> PresenceGate:
        if self._presence is None:

            async def publish(chat_id: str, state: str, last_seen: datetime | None) -> None:
                await self._bus.publish("presence", presence_payload(chat_id, state, last_seen))

            self._presence = PresenceGate(publish, self._tasks)
        return self._presence

    async def _on_qr(self, code: str, expires_at: datetime) -> None:
        self._update(qr=code, qr_expires_at=expires_at)
        if self._view is not None and self._view.status != SessionStatus.QR_READY:
            await self._set_state(SessionStatus.QR_READY, None)
        # The API reads the code from the heartbeat: a client that gets the frame then asks finds it
        # (bounded: with PostgreSQL away the frame goes out anyway).
        await self._heartbeat.stored(STORED_WAIT_S)
        await self._bus.publish("qr", qr_payload(code, expires_at))
        # The round ends when the last code expires and no next one came (neonize then goes silent).
        grace = min(5.0, self._config.qr_next_s)
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        self._arm(max(remaining, 0.0) + grace, "pairing round ended", action="qr_round")

    async def _on_paired(self, device_jid: str, phone: str, push_name: str | None) -> None:
        self._write(SaveProfile(phone, push_name, None, device_jid))
        self._write(SaveCounters(qr_rounds=0, connect_failures=0))
        if self._row is not None:
            self._row = replace(self._row, device_jid=device_jid, qr_rounds=0, connect_failures=0)
        self._update(phone=phone, display_name=push_name, qr=None, qr_expires_at=None, pairing_code=None)
        self._disarm()  # before waiting: the QR round's watchdog must not end a round that was scanned
        assert self._journal is not None
        if not await self._journal.wait_drained(PAIRING_SETTLE_S):
            log.warning("session %s: paired while the database is away; device spooled", self.session_id)
        self._settle_pairing(device_jid)  # a no-op when _phone_taken settled it with the conflict
        log.info("session %s: paired as %s", self.session_id, device_jid)

    def _settle_pairing(self, outcome: str | BaseException) -> None:
        fut, self._pairing = self._pairing, None
        if fut is None or fut.done():
            return
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)

    async def _on_connected(self, push_name: str | None, pic: str | None) -> None:
        view = self._view
        name = push_name or (view.display_name if view else None)
        picture = pic or (view.profile_pic_url if view else None)
        if view is not None and (name != view.display_name or picture != view.profile_pic_url):
            self._write(SaveProfile(view.phone, name, picture, None))
        if self._row is not None and self._row.connect_failures:
            self._write(SaveCounters(connect_failures=0))
            self._row = replace(self._row, connect_failures=0)
        now = datetime.now(UTC)
        self._write(SaveLastSeen(now))
        self._update(display_name=name, profile_pic_url=picture, last_seen=now, qr=None, pairing_code=None)
        await self._set_state(SessionStatus.CONNECTED, None)
        self._disarm()
        self._own_picture_on_connect(pic)

    async def _on_disconnected(self, reason: Reason, retrying: bool, retry_after_s: float | None) -> None:
        if retrying:
            await self._set_state(SessionStatus.CONNECTING, reason)
            self._arm(self._config.connect_timeout_s, "reconnect did not finish", action="dial_failed")
            return
        banned_until_expiry = reason is Reason.BANNED and retry_after_s is not None
        if not banned_until_expiry:
            self._count_connect_failure()
        await self._set_state(SessionStatus.DISCONNECTED, reason)
        self._disarm()
        if banned_until_expiry:
            assert retry_after_s is not None
            log.warning("session %s: temporarily banned; retrying in %.0fs", self.session_id, retry_after_s)
            await self._stop_client()
            self._tasks.spawn(self._recycle_later(retry_after_s, "temporary ban expired"), "ban expiry")
            return
        if reason in TERMINAL_REASONS:
            await self._stop_client()
            return
        # The fresh process waits the backoff before dialling (see _boot): one place, and a process that
        # crashes at connect is slowed down the same way.
        self._tasks.spawn(self.recycle(f"dial failed ({reason})"), "recycle")

    async def _on_logged_out(self, reason: Reason) -> None:
        self._write(ClearDevice())
        if self._row is not None:
            self._row = replace(self._row, device_jid=None)
        self._update(qr=None, qr_expires_at=None, pairing_code=None)
        await self._set_state(SessionStatus.DISCONNECTED, reason)
        self._disarm()
        await self._stop_client()
        log.info("session %s: logged out (%s); a new scan is needed", self.session_id, reason)
