"""One WhatsApp number: the session state machine, its watchdogs, and what users ask of it.

`SessionCore` is plain asyncio (no Ray): `actors.actor.SessionActor` is the thin Ray shell around it.

State transitions (status / reason, see DESIGN.md):
- start: unpaired → `connecting` → `qr_ready` (QR codes rotate); paired → `connecting` → `connected`.
- a QR round that ends unscanned → a fresh round in a fresh process, at most `qr_max_rounds`, then
  `disconnected` / `qr_timeout` until the user asks again (pairing code or reconnect).
- a dial or reconnect that does not finish within `connect_timeout_s` → the process is recycled.
- a failed dial (`Disconnected(retrying=False)`) → `disconnected` / reason and a fresh process, which
  waits a capped, jittered backoff before dialling (`connect_failures` counts across processes).
- `LoggedOut` → `disconnected` / reason, device forgotten; stays down until the user pairs again.
Recovery is always a fresh process (`exit_process`), never a second client in this one: neonize leaks a
DB pool per `connect()` and aborts with two clients in a process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from actors.bus import EventBus
from actors.domain import (
    TERMINAL_REASONS,
    Chat,
    Message,
    MessageStatus,
    MessageType,
    Page,
    Reason,
    SendResult,
    SessionStatus,
    SessionView,
)
from actors.downloads import MediaStream, stream_media
from actors.errors import (
    AlreadyConnected,
    InvalidInput,
    MediaTooLarge,
    PhoneAlreadyPaired,
    SessionNotConnected,
    SessionNotFound,
    SessionUnavailable,
)
from actors.events import (
    ClientEvent,
    Connected,
    Disconnected,
    HistoryChunk,
    LoggedOut,
    MessageReceived,
    Paired,
    PairingCode,
    QrCode,
    Receipt,
)
from actors.ids import jid_user, to_jid
from actors.ports import ClientOptions, OutgoingMedia, WhatsAppClient
from actors.tasks import TaskGroup
from actors.wire import msg_payload, qr_payload, status_payload
from persistence.session_store import StoredSession

log = logging.getLogger(__name__)

MAX_TEXT = 65_536
BACKOFF_CAP_S = 300.0


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What a session process needs; built by the registry from Settings, passed to the actor."""

    backend: str
    database_dsn: str
    auth_dsn: str
    redis_url: str
    qr_max_rounds: int = 3
    connect_timeout_s: float = 60.0
    max_media_bytes: int = 16 * 1024 * 1024
    qr_first_s: float = 60.0
    qr_next_s: float = 20.0
    qr_codes: int = 6
    backoff_base_s: float = 2.0


class Store(Protocol):
    """What the session needs of `persistence.session_store.SessionStore`."""

    async def load(self) -> StoredSession | None: ...
    async def save_state(self, status: SessionStatus, reason: Reason | None) -> None: ...
    async def save_profile(
        self,
        *,
        phone: str | None,
        display_name: str | None,
        profile_pic_url: str | None,
        device_jid: str | None,
    ) -> None: ...
    async def clear_device(self) -> None: ...
    async def set_counters(
        self, *, qr_rounds: int | None = None, connect_failures: int | None = None
    ) -> None: ...
    async def touch_last_seen(self) -> datetime: ...
    async def apply_history(self, chunk: HistoryChunk) -> None: ...
    async def add_message(self, message: Message, *, chat_name: str | None, count_unread: bool) -> bool: ...
    async def apply_receipt(
        self, chat_id: str, message_ids: tuple[str, ...], status: MessageStatus
    ) -> list[Message]: ...
    async def chats(self, limit: int, cursor: str | None) -> Page[Chat]: ...
    async def messages(self, chat_id: str, limit: int, cursor: str | None) -> Page[Message]: ...
    async def get_message(self, chat_id: str, message_id: str) -> Message: ...
    async def mark_chat_read(self, chat_id: str) -> None: ...
    async def purge(self) -> None: ...
    async def close(self) -> None: ...


ClientFactory = Callable[[ClientOptions], WhatsAppClient]


class SessionCore:
    """The state machine of one session. Every public coroutine is safe to call concurrently."""

    def __init__(
        self,
        session_id: str,
        config: SessionConfig,
        *,
        client_factory: ClientFactory,
        store: Store,
        bus: EventBus,
        exit_process: Callable[[str], None],
    ) -> None:
        self.session_id = session_id
        self._config = config
        self._client_factory = client_factory
        self._store = store
        self._bus = bus
        self._exit_process = exit_process
        self._tasks = TaskGroup(f"session {session_id}")
        self._client: WhatsAppClient | None = None
        self._client_running = False
        self._row: StoredSession | None = None
        self._view: SessionView | None = None
        self._started = False
        self._ready = asyncio.Event()
        self._watchdog: asyncio.Task[Any] | None = None
        self._pairing: asyncio.Future[str] | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin (idempotent): load the row, then connect unless the session waits for the user."""
        if not self._started:
            self._started = True
            self._tasks.spawn(self._boot(), "boot")

    async def _boot(self) -> None:
        row = await self._store.load()
        if row is None:
            log.warning("session %s: no row in the database; idle until stopped", self.session_id)
            self._ready.set()
            return
        self._row = row
        self._view = replace(row.view, qr=None, qr_expires_at=None, pairing_code=None)
        self._ready.set()
        waiting = row.view.reason in TERMINAL_REASONS and row.device_jid is None
        if waiting or row.qr_rounds >= self._config.qr_max_rounds:
            reason = row.view.reason or Reason.QR_TIMEOUT
            log.info("session %s: waiting for the user (%s)", self.session_id, reason)
            await self._set_state(SessionStatus.DISCONNECTED, reason)
            return
        if row.connect_failures:
            delay = self._backoff(row.connect_failures)
            log.info(
                "session %s: dial failed %d times; next try in %.1fs",
                self.session_id,
                row.connect_failures,
                delay,
            )
            await asyncio.sleep(delay)
        await self._connect(row.device_jid)

    def _backoff(self, failures: int) -> float:
        ceiling = min(BACKOFF_CAP_S, self._config.backoff_base_s * 2 ** min(failures - 1, 16))
        return float(ceiling * random.uniform(0.5, 1.0))

    async def _connect(self, device_jid: str | None) -> None:
        options = ClientOptions(
            session_id=self.session_id,
            device_jid=device_jid,
            auth_dsn=self._config.auth_dsn,
            qr_first_s=self._config.qr_first_s,
            qr_next_s=self._config.qr_next_s,
            qr_codes=self._config.qr_codes,
        )
        client = self._client = self._client_factory(options)
        await self._set_state(SessionStatus.CONNECTING, None)
        self._arm(self._config.connect_timeout_s, "connect did not finish")
        self._tasks.spawn(self._pump(client), "events")
        self._client_running = True
        try:
            await asyncio.wait_for(client.connect(), self._config.connect_timeout_s)
        except TimeoutError:
            await self.recycle("connect() hung")

    async def _pump(self, client: WhatsAppClient) -> None:
        async for event in client.events():
            if self._closing:
                continue  # this process is going away: nothing more it hears may change the state
            try:
                await self._handle(event)
            except Exception:
                log.exception("session %s: handling %s failed", self.session_id, type(event).__name__)

    async def wait_ready(self) -> SessionView:
        """The current view once the row is loaded (SessionUnavailable while still booting)."""
        try:
            await asyncio.wait_for(self._ready.wait(), 5.0)
        except TimeoutError as err:
            raise SessionUnavailable(retry_after=2) from err
        if self._view is None:
            raise SessionNotFound()
        return self._view

    async def recycle(self, why: str) -> None:
        """Give up this process: release what we can within a bound, then exit so Ray starts a fresh one."""
        log.warning("session %s: recycling the process: %s", self.session_id, why)
        await self._stop_client()
        await self._bus.close()
        await self._store.close()
        self._exit_process(why)

    async def _recycle_later(self, delay_s: float, why: str) -> None:
        await asyncio.sleep(delay_s)
        await self.recycle(why)

    async def _stop_client(self) -> None:
        if self._client is None or not self._client_running:
            return
        self._client_running = False
        try:
            await asyncio.wait_for(self._client.stop(), 3.0)
        except Exception:
            log.warning("session %s: the client did not stop cleanly", self.session_id, exc_info=True)

    async def close(self, *, purge: bool) -> None:
        """Stop for good (the registry kills the actor next); purge also unlinks and drops the store."""
        self._closing = True
        self._disarm()
        if purge and self._client is not None and self._client_running:
            try:
                await asyncio.wait_for(self._client.logout(), 5.0)
            except Exception:
                log.warning("session %s: logout failed; deleting locally", self.session_id, exc_info=True)
        await self._stop_client()
        await self._tasks.cancel_all()
        if purge:
            await self._store.purge()
        await self._bus.close()
        await self._store.close()

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
        else:
            await self.recycle(why)

    async def _qr_round_ended(self) -> None:
        assert self._row is not None
        rounds = self._row.qr_rounds + 1
        self._row = replace(self._row, qr_rounds=rounds)
        await self._store.set_counters(qr_rounds=rounds)
        if rounds >= self._config.qr_max_rounds:
            log.info("session %s: %d pairing rounds ended unscanned: qr_timeout", self.session_id, rounds)
            await self._stop_client()
            await self._set_state(SessionStatus.DISCONNECTED, Reason.QR_TIMEOUT)
            return
        await self.recycle(f"pairing round {rounds} ended unscanned")

    # ------------------------------------------------------------------ events

    async def _handle(self, event: ClientEvent) -> None:
        match event:
            case QrCode(code, expires_at):
                await self._on_qr(code, expires_at)
            case PairingCode(code, _phone):
                self._update(pairing_code=code)
            case Paired(device_jid, phone, push_name):
                await self._on_paired(device_jid, phone, push_name)
            case Connected(push_name, pic):
                await self._on_connected(push_name, pic)
            case Disconnected(reason, retrying):
                await self._on_disconnected(reason, retrying)
            case LoggedOut(reason):
                await self._on_logged_out(reason)
            case MessageReceived(message, chat_name):
                await self._store.add_message(message, chat_name=chat_name, count_unread=not message.from_me)
                await self._bus.publish("msg", msg_payload(message))
            case HistoryChunk():
                await self._store.apply_history(event)
                log.info(
                    "session %s: history chunk with %d chats stored",
                    self.session_id,
                    len(event.conversations),
                )
            case Receipt(chat_id, ids, status, _ts):
                for message in await self._store.apply_receipt(chat_id, ids, status):
                    await self._bus.publish("msg", msg_payload(message))

    async def _on_qr(self, code: str, expires_at: datetime) -> None:
        self._update(qr=code, qr_expires_at=expires_at)
        if self._view is not None and self._view.status != SessionStatus.QR_READY:
            await self._set_state(SessionStatus.QR_READY, None)
        await self._bus.publish("qr", qr_payload(code, expires_at))
        # The round ends when the last code expires and no next one came (neonize then goes silent).
        grace = min(5.0, self._config.qr_next_s)
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        self._arm(max(remaining, 0.0) + grace, "pairing round ended", action="qr_round")

    async def _on_paired(self, device_jid: str, phone: str, push_name: str | None) -> None:
        self._disarm()
        try:
            await self._store.save_profile(
                phone=phone, display_name=push_name, profile_pic_url=None, device_jid=device_jid
            )
        except PhoneAlreadyPaired as err:
            log.warning("session %s: %s is paired to another session; unlinking", self.session_id, phone)
            self._settle_pairing(err)
            self._closing = True  # e.g. the Connected that follows Paired must not show this session up
            if self._client is not None:
                await self._client.logout()
            # Let the scan's 409 reach the caller before this process goes.
            self._tasks.spawn(self._recycle_later(0.5, "phone already paired elsewhere"), "recycle")
            return
        await self._store.set_counters(qr_rounds=0, connect_failures=0)
        if self._row is not None:
            self._row = replace(self._row, device_jid=device_jid, qr_rounds=0, connect_failures=0)
        self._update(phone=phone, display_name=push_name, qr=None, qr_expires_at=None, pairing_code=None)
        self._settle_pairing(device_jid)
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
        self._disarm()
        view = self._view
        name = push_name or (view.display_name if view else None)
        picture = pic or (view.profile_pic_url if view else None)
        if view is not None and (name != view.display_name or picture != view.profile_pic_url):
            await self._store.save_profile(
                phone=view.phone, display_name=name, profile_pic_url=picture, device_jid=None
            )
        if self._row is not None and self._row.connect_failures:
            await self._store.set_counters(connect_failures=0)
            self._row = replace(self._row, connect_failures=0)
        last_seen = await self._store.touch_last_seen()
        self._update(
            display_name=name, profile_pic_url=picture, last_seen=last_seen, qr=None, pairing_code=None
        )
        await self._set_state(SessionStatus.CONNECTED, None)

    async def _on_disconnected(self, reason: Reason, retrying: bool) -> None:
        if retrying:
            await self._set_state(SessionStatus.CONNECTING, reason)
            self._arm(self._config.connect_timeout_s, "reconnect did not finish")
            return
        self._disarm()
        await self._set_state(SessionStatus.DISCONNECTED, reason)
        failures = (self._row.connect_failures if self._row else 0) + 1
        await self._store.set_counters(connect_failures=failures)
        if self._row is not None:
            self._row = replace(self._row, connect_failures=failures)
        if reason in TERMINAL_REASONS:
            await self._stop_client()
            return
        # The fresh process waits the backoff before dialling (see _boot): one place, and a process that
        # crashes at connect is slowed down the same way.
        self._tasks.spawn(self.recycle(f"dial failed ({reason})"), "recycle")

    async def _on_logged_out(self, reason: Reason) -> None:
        self._disarm()
        await self._store.clear_device()
        if self._row is not None:
            self._row = replace(self._row, device_jid=None)
        self._update(qr=None, qr_expires_at=None, pairing_code=None)
        await self._set_state(SessionStatus.DISCONNECTED, reason)
        await self._stop_client()
        log.info("session %s: logged out (%s); a new scan is needed", self.session_id, reason)

    # ------------------------------------------------------------------ state

    def _update(self, **changes: Any) -> None:
        if self._view is not None:
            self._view = replace(self._view, **changes)

    async def _set_state(self, status: SessionStatus, reason: Reason | None) -> None:
        if self._view is None or self._closing:
            return
        if status != SessionStatus.QR_READY:
            self._update(qr=None, qr_expires_at=None)
        changed = (self._view.status, self._view.reason) != (status, reason)
        self._update(status=status, reason=reason)
        if changed:
            await self._store.save_state(status, reason)
            log.info("session %s: %s%s", self.session_id, status, f" ({reason})" if reason else "")
        await self._bus.publish("status", status_payload(self._view))

    # ------------------------------------------------------------------ user requests

    async def view(self) -> SessionView:
        return await self.wait_ready()

    def current(self) -> SessionView | None:
        """The view as it stands now (None while the row is still loading)."""
        return self._view

    async def request_pairing_code(self, phone: str) -> str:
        view = await self.wait_ready()
        if view.status == SessionStatus.CONNECTED:
            raise AlreadyConnected()
        if self._client is None or not self._client_running or (self._row and self._row.device_jid):
            await self.restart_pairing()
        assert self._client is not None
        return await self._client.request_pairing_code(phone)

    async def restart_pairing(self) -> None:
        """Start pairing afresh after `logged_out` / `qr_timeout`: a fresh process shows new codes.

        Raises SessionUnavailable: the caller retries once the new process is up.
        """
        view = await self.wait_ready()
        if view.status == SessionStatus.CONNECTED:
            raise AlreadyConnected()
        await self._store.set_counters(qr_rounds=0, connect_failures=0)
        await self._set_state(SessionStatus.CONNECTING, None)
        self._tasks.spawn(self._recycle_later(0.2, "pairing requested"), "recycle")
        raise SessionUnavailable("A new pairing round is starting; retry shortly", retry_after=2)

    def _client_if_connected(self) -> WhatsAppClient:
        if self._view is None or self._view.status != SessionStatus.CONNECTED or self._client is None:
            raise SessionNotConnected()
        return self._client

    async def _own_message(self, sent: SendResult, to: str, **fields: Any) -> Message:
        me = self._row.device_jid if self._row and self._row.device_jid else None
        sender = f"{jid_user(me)}@s.whatsapp.net" if me else "me"
        message = Message(
            id=sent.id, chat_id=to, sender=sender, from_me=True, timestamp=sent.timestamp, **fields
        )
        await self._store.add_message(message, chat_name=None, count_unread=False)
        await self._bus.publish("msg", msg_payload(message))
        return message

    async def _quoted(self, chat_id: str, quoted_id: str | None) -> Message | None:
        return await self._store.get_message(chat_id, quoted_id) if quoted_id else None

    async def send_text(self, to: str, text: str, quoted_id: str | None = None) -> SendResult:
        if not text.strip() or len(text) > MAX_TEXT:
            raise InvalidInput(f"text must be 1..{MAX_TEXT} characters")
        client = self._client_if_connected()
        jid = to_jid(to)
        quoted = await self._quoted(jid, quoted_id)
        sent = await client.send_text(jid, text, quoted=quoted)
        await self._own_message(sent, jid, text=text, quoted_id=quoted_id)
        return sent

    async def send_media(
        self, to: str, data: bytes, *, file_name: str | None, mimetype: str | None, caption: str | None
    ) -> SendResult:
        from actors import media as media_mod

        if len(data) > self._config.max_media_bytes:
            raise MediaTooLarge(limit=self._config.max_media_bytes)
        client = self._client_if_connected()
        jid = to_jid(to)
        outgoing: OutgoingMedia = media_mod.outgoing_media(data, mimetype, file_name, caption)
        sent = await client.send_media(jid, outgoing)
        await self._own_message(
            sent,
            jid,
            type=outgoing.kind,
            text=caption,
            media=media_mod.media_info(outgoing),
        )
        return sent

    async def send_voice_note(self, to: str, data: bytes) -> SendResult:
        from actors import media as media_mod

        if len(data) > self._config.max_media_bytes:
            raise MediaTooLarge(limit=self._config.max_media_bytes)
        client = self._client_if_connected()
        jid = to_jid(to)
        note = await asyncio.to_thread(media_mod.to_voice_note, data)
        sent = await client.send_voice_note(jid, note)
        await self._own_message(sent, jid, type=MessageType.AUDIO, media=media_mod.voice_note_info(note))
        return sent

    async def chats(self, limit: int, cursor: str | None) -> Page[Chat]:
        await self.wait_ready()
        return await self._store.chats(limit, cursor)

    async def messages(self, chat_id: str, limit: int, cursor: str | None) -> Page[Message]:
        await self.wait_ready()
        return await self._store.messages(to_jid(chat_id), limit, cursor)

    def media(self, chat_id: str, message_id: str) -> MediaStream:
        """The message's media: its head, then its bytes in chunks (see `actors.downloads`)."""
        return stream_media(
            self._store, self._client_if_connected, self._config.max_media_bytes, chat_id, message_id
        )

    async def mark_read(self, chat_id: str) -> None:
        jid = to_jid(chat_id)
        await self._store.mark_chat_read(jid)
        if (
            self._client is not None
            and self._view is not None
            and self._view.status == SessionStatus.CONNECTED
        ):
            page = await self._store.messages(jid, 20, None)
            unread = [m for m in page.items if not m.from_me]
            if unread:
                await self._client.mark_read(jid, unread)

    # ------------------------------------------------------------------ the simulated network's controls

    async def simulate(self, op: str, **kwargs: Any) -> Any:
        """Forward a /simulator control call to the simulated client (only that backend has them)."""
        await self.wait_ready()
        client = self._client
        handler = getattr(client, op, None) if op in _SIM_OPS else None
        if client is None or handler is None:
            raise InvalidInput(f"simulator operation {op!r} is not available on this session")
        if op != "scan":
            return await handler(**kwargs)
        loop = asyncio.get_running_loop()
        self._pairing = loop.create_future()
        pairing = self._pairing
        await handler(**kwargs)
        return await asyncio.wait_for(pairing, 10.0)


_SIM_OPS = frozenset({"scan", "incoming", "history", "drop", "unlink", "sent"})
