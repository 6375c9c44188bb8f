"""One WhatsApp number: the session state machine, its watchdogs, and what users ask of it.

`SessionCore` is plain asyncio (no Ray): `actors.actor.SessionActor` is the thin Ray shell around it.

State transitions (status / reason, see DESIGN.md):
- start: unpaired → `connecting` → `qr_ready` (QR codes rotate); paired → `connecting` → `connected`.
- a QR round that ends unscanned → a fresh round in a fresh process, at most `qr_max_rounds`, then
  `disconnected` / `qr_timeout` until the user asks again (pairing code or reconnect).
- a dial or reconnect that does not finish within `connect_timeout_s` → the process is recycled, and it
  counts as a failed dial (the next process waits its backoff).
- a failed dial (`Disconnected(retrying=False)`) → `disconnected` / reason and a fresh process, which
  waits a capped, jittered backoff before dialling (`connect_failures` counts across processes); a
  temporary ban with an expiry → a fresh process once it expires.
- `LoggedOut` → `disconnected` / reason, device forgotten; stays down until the user pairs again.
Recovery is always a fresh process (`exit_process`), never a second client in this one: neonize leaks a
DB pool per `connect()` and aborts with two clients in a process.

Every transition runs in one order: make durable what must survive (a journal entry: `actors.journal`,
on local disk at once, in PostgreSQL when it answers), change memory, publish, and only then touch the
watchdogs. No step of a transition waits for PostgreSQL, so a database outage never strands a session;
boot is the one step that needs it (the row says which device to resume), and it retries with backoff
until the database answers, reporting itself not ready meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from actors.bus import EventBus
from actors.domain import (
    TERMINAL_REASONS,
    Chat,
    Message,
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
    ClientTimeout,
    InvalidInput,
    MediaTooLarge,
    ServiceUnavailable,
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
from actors.journal import Journal
from actors.ledger import SendLedger
from actors.ports import ClientOptions, OutgoingMedia, WhatsAppClient
from actors.spool import Spool, SpoolFull
from actors.tasks import TaskGroup
from actors.wire import qr_payload, status_payload
from actors.writes import (
    ClearDevice,
    SaveCounters,
    SaveLastSeen,
    SaveProfile,
    SaveState,
    Store,
    StoreHistory,
    StoreMessage,
    StoreReceipt,
    Write,
    applier,
)
from persistence.session_store import StoredSession

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_TEXT = 65_536
BACKOFF_CAP_S = 300.0
BOOT_RETRY_MAX_S = 5.0
# How long a pairing waits for its device to reach PostgreSQL (to report a phone paired elsewhere).
PAIRING_SETTLE_S = 3.0
# Consecutive client calls that time out before the session reports itself stuck.
STUCK_AFTER_TIMEOUTS = 3
CLOSE_DRAIN_S = 10.0
RECYCLE_DRAIN_S = 2.0


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
    spool_dir: str = ""  # "" = the system's temporary folder (see actors.actor)
    spool_max_bytes: int = 256 * 1024 * 1024


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
        open_spool: Callable[[], Spool],
        exit_process: Callable[[str], None],
    ) -> None:
        self.session_id = session_id
        self._config = config
        self._client_factory = client_factory
        self._store = store
        self._bus = bus
        self._open_spool = open_spool
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
        self._journal: Journal | None = None
        self._ledger: SendLedger | None = None
        self._boot_error: str | None = None
        self._client_timeouts = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin (idempotent): load the row, then connect unless the session waits for the user."""
        if not self._started:
            self._started = True
            self._tasks.spawn(self._boot(), "boot")

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def stuck(self) -> str | None:
        """Why this session cannot make progress, or None (the registry restarts a stuck session)."""
        if self._client_timeouts >= STUCK_AFTER_TIMEOUTS:
            return f"{self._client_timeouts} WhatsApp client calls in a row timed out"
        return None

    @property
    def spooled(self) -> int:
        return self._journal.backlog if self._journal is not None else 0

    async def _boot(self) -> None:
        delay = 0.5
        while True:
            try:
                row = await self._load()
                break
            except (ServiceUnavailable, OSError) as err:
                if self._boot_error is None:
                    log.warning("session %s: cannot load its row (%s); retrying", self.session_id, err)
                self._boot_error = str(err)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BOOT_RETRY_MAX_S)
            except Exception:
                # Not a dependency that is away: a fresh process is the only retry that can differ.
                log.exception("session %s: boot failed", self.session_id)
                self._boot_error = "boot failed"
                await asyncio.sleep(BOOT_RETRY_MAX_S)
                await self.recycle("boot failed")
                return
        if self._boot_error is not None:
            log.info("session %s: row loaded after the database came back", self.session_id)
            self._boot_error = None
        assert self._journal is not None
        self._journal.start()
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

    async def _load(self) -> StoredSession | None:
        """What an earlier process spooled goes to PostgreSQL first, in order; then the row is read."""
        if self._journal is None:
            apply = applier(self._store, self._bus, self._phone_taken)
            self._journal = Journal(self._open_spool(), apply, f"session {self.session_id}")
            self._ledger = SendLedger(self.session_id, self._store.send_records, self._journal)
        await self._journal.flush()
        row = await self._store.load()
        if row is not None:
            assert self._ledger is not None
            await self._ledger.load(row.view.user_id)
        return row

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
        self._arm(self._config.connect_timeout_s, "connect did not finish", action="dial_failed")
        self._tasks.spawn(self._pump(client), "events")
        self._client_running = True
        try:
            await asyncio.wait_for(client.connect(), self._config.connect_timeout_s)
        except TimeoutError:
            await self._dial_failed("connect() hung")

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
        if not self._ready.is_set():  # once set, no timer per call: sends and reads come through here
            try:
                await asyncio.wait_for(self._ready.wait(), 5.0)
            except TimeoutError as err:
                raise SessionUnavailable(retry_after=2) from err
        if self._view is None:
            raise SessionNotFound()
        return self._view

    async def recycle(self, why: str) -> None:
        """Give up this process: release what we can within a bound, then exit so Ray starts a fresh one.

        The journal's spool stays on disk: the next process applies what is left before anything else.
        """
        log.warning("session %s: recycling the process: %s", self.session_id, why)
        self._closing = True
        await self._stop_client()
        if self._journal is not None:
            await self._journal.wait_drained(RECYCLE_DRAIN_S)
            await self._journal.close()
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
        """Stop for good (the registry kills the actor next); purge also unlinks and drops the store.

        Without purge, what the journal holds is applied first (within CLOSE_DRAIN_S), so a session
        stopped here and started on another node loses nothing that reached PostgreSQL in time.
        """
        self._closing = True
        self._disarm()
        if purge and self._client is not None and self._client_running:
            try:
                await asyncio.wait_for(self._client.logout(), 5.0)
            except Exception:
                log.warning("session %s: logout failed; deleting locally", self.session_id, exc_info=True)
        await self._stop_client()
        await self._tasks.cancel_all()
        journal, self._journal = self._journal, None
        if journal is not None:
            if not purge and not await journal.wait_drained(CLOSE_DRAIN_S):
                log.warning("session %s: %d writes still spooled at close", self.session_id, journal.backlog)
            await journal.close()
            if purge:
                journal.discard()
        if purge:
            await self._store.purge()
        await self._bus.close()
        await self._store.close()

    # ------------------------------------------------------------------ durable writes

    def _write(self, entry: Write) -> None:
        """Make `entry` durable now; PostgreSQL gets it in order, when it answers."""
        assert self._journal is not None
        try:
            self._journal.write(entry)
        except SpoolFull:
            log.error("session %s: spool full; %s lost", self.session_id, type(entry).__name__)
            raise

    async def _phone_taken(self, entry: SaveProfile, err: Exception) -> None:
        """The phone just paired is held by another session: unlink this device and start afresh."""
        log.warning("session %s: %s is paired to another session; unlinking", self.session_id, entry.phone)
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
            case HistoryChunk():
                self._write(StoreHistory(event))
                log.info(
                    "session %s: history chunk with %d chats received",
                    self.session_id,
                    len(event.conversations),
                )
            case Receipt(chat_id, ids, status, _ts):
                self._write(StoreReceipt(chat_id, ids, status))

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

    # ------------------------------------------------------------------ state

    def _update(self, **changes: Any) -> None:
        if self._view is not None:
            self._view = replace(self._view, **changes)

    async def _set_state(self, status: SessionStatus, reason: Reason | None) -> None:
        if self._view is None or self._closing:
            return
        changed = (self._view.status, self._view.reason) != (status, reason)
        if changed:
            self._write(SaveState(status, reason))
        if status != SessionStatus.QR_READY:
            self._update(qr=None, qr_expires_at=None)
        self._update(status=status, reason=reason)
        if changed:
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
        self._write(SaveCounters(qr_rounds=0, connect_failures=0))
        await self._set_state(SessionStatus.CONNECTING, None)
        self._tasks.spawn(self._recycle_later(0.2, "pairing requested"), "recycle")
        raise SessionUnavailable("A new pairing round is starting; retry shortly", retry_after=2)

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
        message = Message(
            id=sent.id, chat_id=to, sender=sender, from_me=True, timestamp=sent.timestamp, **fields
        )
        try:
            self._write(StoreMessage(message, None, count_unread=False))
        except SpoolFull:
            pass  # WhatsApp took it: the send succeeded; only our copy is missing (logged)

    async def _quoted(self, chat_id: str, quoted_id: str | None) -> Message | None:
        return await self._store.get_message(chat_id, quoted_id) if quoted_id else None

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
        jid = to_jid(to)

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
        jid = to_jid(to)

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
        jid = to_jid(to)

        async def send() -> SendResult:
            client = self._client_if_connected()
            note = await asyncio.to_thread(media_mod.to_voice_note, data)
            sent = await self._timed(client.send_voice_note(jid, note))
            self._own_message(sent, jid, type=MessageType.AUDIO, media=media_mod.voice_note_info(note))
            return sent

        return await self._send(idempotency_key, ("voice", jid, data), send)

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
