"""A session's transitions: what each WhatsApp event does, and the watchdogs that end a stalled step.

The order every transition follows is in `actors.session`'s docstring.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from actors.incoming_calls import IncomingCalls
from actors.presence import PresenceGate
from actors.session_contacts import Contacts
from actors.session_state import PAIRING_SETTLE_S, STORED_WAIT_S, SessionState
from actors.writes import (
    ClearDevice,
    SaveCounters,
    SaveLastSeen,
    SaveProfile,
    StoreChatRead,
    StoreEdit,
    StoreGroupChange,
    StoreHistory,
    StoreMessage,
    StoreReaction,
    StoreReceipt,
    StoreRevoke,
    StoreVote,
)
from kernel.domain import TERMINAL_REASONS, Reason, SessionStatus
from kernel.events import (
    CallOffered,
    ChatRead,
    ClientEvent,
    Connected,
    ContactName,
    Disconnected,
    GroupChanged,
    HistoryChunk,
    IdentityLink,
    LoggedOut,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    Paired,
    PairingCode,
    PictureChanged,
    PollVoted,
    Presence,
    QrCode,
    ReactionChanged,
    Receipt,
)
from kernel.wire import presence_payload, qr_payload

log = logging.getLogger(__name__)


class Transitions:
    """What each WhatsApp event does to the session, and the watchdogs that end a stalled step."""

    def __init__(self, state: SessionState, contacts: Contacts, calls: IncomingCalls) -> None:
        self._state = state
        self._contacts = contacts
        self._calls = calls
        self._watchdog: asyncio.Task[Any] | None = None
        self._pairing: asyncio.Future[str] | None = None  # a simulated scan waiting for its outcome
        self._presence = PresenceGate(self._publish_presence, state.tasks)  # contacts' typing/online

    def expect_pairing(self) -> asyncio.Future[str]:
        """A future settled with the device paired next (or the reason it was refused)."""
        self._pairing = asyncio.get_running_loop().create_future()
        return self._pairing

    async def phone_taken(self, entry: SaveProfile, err: Exception) -> None:
        """The phone just paired is held by another session: unlink this device and start afresh."""
        session = self._state
        log.warning("session %s: %s is paired to another session; unlinking", session.session_id, entry.phone)
        # Said before `closing` silences state changes; the next round's `connecting` clears it.
        # The row never took this phone: it still names the phone last linked here (or none).
        kept = session.row.view if session.row is not None else None
        session.update(phone=kept.phone if kept else None, display_name=kept.display_name if kept else None)
        await session.set_state(SessionStatus.DISCONNECTED, Reason.PHONE_IN_USE)
        self._settle_pairing(err)
        session.closing = True  # e.g. the Connected that follows Paired must not show this session up
        await session.store.clear_device()
        if session.client is not None and session.client_running:
            await session.client.logout()
        # Let the scan's 409 reach the caller before this process goes.
        session.tasks.spawn(session.recycle_later(0.5, "phone already paired elsewhere"), "recycle")

    # ------------------------------------------------------------------ watchdog

    def arm(self, after_s: float, why: str, action: str = "recycle") -> None:
        self.disarm()
        self._watchdog = self._state.tasks.spawn(self._fire(after_s, why, action), f"watchdog ({why})")

    def disarm(self) -> None:
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self._watchdog = None

    async def _fire(self, after_s: float, why: str, action: str) -> None:
        await asyncio.sleep(after_s)
        self._watchdog = None
        if action == "qr_round":
            await self._qr_round_ended()
        elif action == "dial_failed":
            await self.dial_failed(why)
        else:
            await self._state.recycle(why)

    async def dial_failed(self, why: str) -> None:
        """A dial or reconnect that never finished: counted like a refused one, so the next waits."""
        self._count_connect_failure()
        await self._state.recycle(why)

    def _count_connect_failure(self) -> int:
        session = self._state
        failures = (session.row.connect_failures if session.row else 0) + 1
        session.write(SaveCounters(connect_failures=failures))
        if session.row is not None:
            session.row = replace(session.row, connect_failures=failures)
        return failures

    async def _qr_round_ended(self) -> None:
        session = self._state
        assert session.row is not None
        rounds = session.row.qr_rounds + 1
        session.write(SaveCounters(qr_rounds=rounds))
        session.row = replace(session.row, qr_rounds=rounds)
        if rounds >= session.config.qr_max_rounds:
            log.info("session %s: %d pairing rounds ended unscanned: qr_timeout", session.session_id, rounds)
            await session.set_state(SessionStatus.DISCONNECTED, Reason.QR_TIMEOUT)
            await session.stop_client()
            return
        await session.recycle(f"pairing round {rounds} ended unscanned")

    # ------------------------------------------------------------------ events

    async def handle(self, event: ClientEvent) -> None:
        in_inbox = await self._contacts.in_inbox(event)  # chat ids mapped to phone numbers; others dropped
        if in_inbox is None:
            return
        event = in_inbox
        session, contacts = self._state, self._contacts
        match event:
            case QrCode(code, expires_at):
                await self._on_qr(code, expires_at)
            case PairingCode(code, _phone):
                session.update(pairing_code=code)
            case Paired(device_jid, phone, push_name):
                await self._on_paired(device_jid, phone, push_name)
            case Connected(push_name, pic):
                await self._on_connected(push_name, pic)
            case Disconnected(reason, retrying, retry_after_s):
                await self._on_disconnected(reason, retrying, retry_after_s)
            case LoggedOut(reason):
                await self._on_logged_out(reason)
            case MessageReceived(message, chat_name):
                session.write(StoreMessage(message, chat_name, count_unread=not message.from_me))
                contacts.after_message(message)
            case ContactName(jid, name, source):
                contacts.on_contact_name(jid, name, source)
            case IdentityLink(lid, pn):
                await contacts.on_identity_link(lid, pn)
            case PictureChanged(jid):
                contacts.on_picture_changed(jid)
            case HistoryChunk():
                session.write(StoreHistory(event))
                log.info(
                    "session %s: history chunk with %d chats received",
                    session.session_id,
                    len(event.conversations),
                )
            case Receipt(chat_id, ids, status, _ts):
                session.write(StoreReceipt(chat_id, ids, status))
            case ReactionChanged(chat_id, message_id, reaction):
                reaction = replace(reaction, sender=contacts.canon(reaction.sender))
                session.write(StoreReaction(chat_id, message_id, reaction))
            case MessageEdited(chat_id, message_id, text, edited_at):
                session.write(StoreEdit(chat_id, message_id, text, edited_at))
            case MessageRevoked(chat_id, message_id, _ts):
                session.write(StoreRevoke(chat_id, message_id))
            case ChatRead(chat_id, up_to):
                session.write(StoreChatRead(chat_id, up_to))
            case Presence(chat_id, state, last_seen):
                await self._presence.offer(chat_id, state, last_seen)
            case CallOffered():
                self._calls.offered(event)
            case GroupChanged():
                session.write(StoreGroupChange(contacts.canon_group(event)))
            case PollVoted(chat_id, poll_id, voter, hashes, at):
                session.write(StoreVote(chat_id, poll_id, contacts.canon(voter), hashes, at))

    async def _publish_presence(self, chat_id: str, state: str, last_seen: datetime | None) -> None:
        await self._state.bus.publish("presence", presence_payload(chat_id, state, last_seen))

    async def _on_qr(self, code: str, expires_at: datetime) -> None:
        session = self._state
        session.update(qr=code, qr_expires_at=expires_at)
        if session.view is not None and session.view.status != SessionStatus.QR_READY:
            await session.set_state(SessionStatus.QR_READY, None)
        # The API reads the code from the heartbeat: a client that gets the frame then asks finds it
        # (bounded: with PostgreSQL away the frame goes out anyway).
        await session.heartbeat.stored(STORED_WAIT_S)
        done = session.row.qr_rounds if session.row is not None else 0
        rounds_left = max(session.config.qr_max_rounds - done - 1, 0)
        await session.bus.publish("qr", qr_payload(code, expires_at, rounds_left))
        # The round ends when the last code expires and no next one came (neonize then goes silent).
        grace = min(5.0, session.config.qr_next_s)
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        self.arm(max(remaining, 0.0) + grace, "pairing round ended", action="qr_round")

    async def _on_paired(self, device_jid: str, phone: str, push_name: str | None) -> None:
        session = self._state
        session.write(SaveProfile(phone, push_name, None, device_jid))
        session.write(SaveCounters(qr_rounds=0, connect_failures=0))
        if session.row is not None:
            session.row = replace(session.row, device_jid=device_jid, qr_rounds=0, connect_failures=0)
        session.update(phone=phone, display_name=push_name, qr=None, qr_expires_at=None, pairing_code=None)
        self.disarm()  # before waiting: the QR round's watchdog must not end a round that was scanned
        assert session.journal is not None
        if not await session.journal.wait_drained(PAIRING_SETTLE_S):
            log.warning("session %s: paired while the database is away; device spooled", session.session_id)
        self._settle_pairing(device_jid)  # a no-op when phone_taken settled it with the conflict
        log.info("session %s: paired as %s", session.session_id, device_jid)

    def _settle_pairing(self, outcome: str | BaseException) -> None:
        fut, self._pairing = self._pairing, None
        if fut is None or fut.done():
            return
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)

    async def _on_connected(self, push_name: str | None, pic: str | None) -> None:
        session = self._state
        view = session.view
        name = push_name or (view.display_name if view else None)
        picture = pic or (view.profile_pic_url if view else None)
        if view is not None and (name != view.display_name or picture != view.profile_pic_url):
            session.write(SaveProfile(view.phone, name, picture, None))
        if session.row is not None and session.row.connect_failures:
            session.write(SaveCounters(connect_failures=0))
            session.row = replace(session.row, connect_failures=0)
        now = datetime.now(UTC)
        session.write(SaveLastSeen(now))
        session.update(display_name=name, profile_pic_url=picture, last_seen=now, qr=None, pairing_code=None)
        await session.set_state(SessionStatus.CONNECTED, None)
        self.disarm()
        self._contacts.own_picture_on_connect(pic)

    async def _on_disconnected(self, reason: Reason, retrying: bool, retry_after_s: float | None) -> None:
        session = self._state
        if retrying:
            await session.set_state(SessionStatus.CONNECTING, reason)
            self.arm(session.config.connect_timeout_s, "reconnect did not finish", action="dial_failed")
            return
        if reason is Reason.REPLACED and not await session.lease.held():
            # Another process took the number over, as it may: going quietly is what ends a ping-pong.
            await session.lease.lose("WhatsApp replaced the stream")
            return
        banned_until_expiry = reason is Reason.BANNED and retry_after_s is not None
        if not banned_until_expiry:
            self._count_connect_failure()
        await session.set_state(SessionStatus.DISCONNECTED, reason)
        self.disarm()
        if banned_until_expiry:
            assert retry_after_s is not None
            log.warning(
                "session %s: temporarily banned; retrying in %.0fs", session.session_id, retry_after_s
            )
            await session.stop_client()
            session.tasks.spawn(session.recycle_later(retry_after_s, "temporary ban expired"), "ban expiry")
            return
        if reason in TERMINAL_REASONS:
            await session.stop_client()
            return
        # The fresh process waits the backoff before dialling (see Lifecycle.boot): one place, and a
        # process that crashes at connect is slowed down the same way.
        session.tasks.spawn(session.recycle(f"dial failed ({reason})"), "recycle")

    async def _on_logged_out(self, reason: Reason) -> None:
        session = self._state
        session.write(ClearDevice())
        if session.row is not None:
            session.row = replace(session.row, device_jid=None)
        session.update(qr=None, qr_expires_at=None, pairing_code=None)
        await session.set_state(SessionStatus.DISCONNECTED, reason)
        self.disarm()
        await session.stop_client()
        log.info("session %s: logged out (%s); a new scan is needed", session.session_id, reason)
