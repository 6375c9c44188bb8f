"""What every part of a session shares: its settings, its connection and view, durable writes, the state
change and the recycle. `actors.session.SessionCore` builds one `SessionState` and hands it to each of its
collaborators (`actors.session_boot`, `actors.session_transitions`, `actors.session_contacts`,
`actors.session_sends`, `actors.session_inbox`); every field below is set in `SessionState.__init__`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from actors.bus import EventBus
from actors.heartbeat import Beat, Heartbeat
from actors.journal import Apply, Journal, Together
from actors.lease import Lease
from actors.ports import ClientOptions, WhatsAppClient
from actors.ports import SessionStorePort as Store
from actors.spool import Spool, SpoolFull
from actors.tasks import TaskGroup
from actors.writes import SaveState, Write
from kernel import redact
from kernel.domain import Reason, SessionStatus, SessionView
from kernel.errors import ClientTimeout, SessionNotConnected, SessionNotFound, SessionUnavailable
from kernel.ids import USER_SERVER, jid_user
from kernel.stored import StoredSession
from kernel.wire import EVENTS_RETAINED, status_payload

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_CAP_S = 300.0
BOOT_RETRY_MAX_S = 5.0
# How long a pairing waits for its device to reach PostgreSQL (to report a phone paired elsewhere).
PAIRING_SETTLE_S = 3.0
# Consecutive client calls that time out before the session reports itself stuck.
STUCK_AFTER_TIMEOUTS = 3
CLOSE_DRAIN_S = 10.0
RECYCLE_DRAIN_S = 2.0
HEARTBEAT_S = 5.0
LEASE_S = 15.0
# How long a status or QR frame waits for what it announces to be in PostgreSQL, where the API reads it
# (bounded: with PostgreSQL away the frame goes out anyway, and the read answers from the last row).
STORED_WAIT_S = 0.5


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
    events_retained: int = EVENTS_RETAINED  # entries the capped `wa:events` stream keeps (EventBus)
    inbox_chats: str = "direct"  # INBOX_CHATS: "direct" or "all" (kernel.inbox_scope)
    close_drain_s: float = CLOSE_DRAIN_S  # how long a graceful stop waits for the journal to drain
    heartbeat_s: float = HEARTBEAT_S  # how often the process renews its heartbeat (actors.heartbeat)
    lease_s: float = LEASE_S  # how long a lease lasts without renewal (actors.lease)
    # The number's outbound pace (actors.pace): sends per minute and burst; 0 turns it off.
    send_per_minute: int = 30
    send_burst: int = 10
    reject_calls: bool = False  # REJECT_CALLS: decline every call (actors.incoming_calls)
    reject_calls_message: str = ""  # REJECT_CALLS_MESSAGE: then answer the caller with this text


ClientFactory = Callable[[ClientOptions], WhatsAppClient]


class SessionState:
    """One session's shared state and the steps every collaborator uses."""

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
        leave_superseded: Callable[[str], None],
        owner: str,
        take_over: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.session_id = session_id
        self.config = config
        self.store = store
        self.bus = bus
        self.tasks = TaskGroup(f"session {session_id}")
        # What the API reads to tell whether this process is up and connected, and its QR / pairing code.
        self.heartbeat = Heartbeat(store, self.tasks, session_id, config.heartbeat_s)
        # Whether this process may hold the connection; `owner` is the actor it runs (see actors.lease).
        self.lease = Lease(store, self.tasks, session_id, owner, config.lease_s, self._superseded)
        self._client_factory = client_factory
        self._open_spool = open_spool
        # Brings what earlier processes spooled on other nodes here (actors.spool_handover), once.
        self._take_over = take_over
        self._exit_process = exit_process  # Ray starts a fresh process of this actor
        self._leave_superseded = leave_superseded  # no word to Ray: a newer process may be its actor's
        self.client: WhatsAppClient | None = None  # one per process, made by `new_client`
        self.client_running = False
        self.row: StoredSession | None = None  # as loaded at boot, kept in step with our own writes
        self.view: SessionView | None = None  # None until the row is loaded
        self.loaded = asyncio.Event()  # the row was read (or found missing)
        self.closing = False  # this process is going away: nothing more may change the state
        self.journal: Journal | None = None  # opened at boot (`open_journal`): its spool is a file
        self.client_timeouts = 0

    # ------------------------------------------------------------------ what the supervisor asks

    @property
    def stuck(self) -> str | None:
        """Why this session cannot make progress, or None (the registry restarts a stuck session)."""
        if self.client_timeouts >= STUCK_AFTER_TIMEOUTS:
            return f"{self.client_timeouts} WhatsApp client calls in a row timed out"
        return None

    @property
    def spooled(self) -> int:
        return self.journal.backlog if self.journal is not None else 0

    @property
    def failed(self) -> int:
        """Writes set aside because PostgreSQL could not apply them (see `replay_failed`)."""
        return self.journal.failed if self.journal is not None else 0

    @property
    def refused(self) -> str | None:
        """Why the database refuses this session's writes right now (read-only, full), or None."""
        outage = self.journal.outage if self.journal is not None else None
        return str(outage.why) if outage is not None and outage.refuses_writes else None

    def replay_failed(self) -> int:
        """Requeue the writes set aside (their cause is fixed); how many. SessionUnavailable while booting.

        The session's current state is written after them: a state entry among them is older than it.
        """
        if self.journal is None:
            raise SessionUnavailable(retry_after=2)
        count = self.journal.replay_failed()
        if count and self.view is not None and not self.closing:
            self.write(SaveState(self.view.status, self.view.reason))
        return count

    async def wait_ready(self) -> SessionView:
        """The current view once the row is loaded (SessionUnavailable while still booting)."""
        if not self.loaded.is_set():  # once set, no timer per call: sends and reads come through here
            try:
                await asyncio.wait_for(self.loaded.wait(), 5.0)
            except TimeoutError as err:
                raise SessionUnavailable(retry_after=2) from err
        if self.view is None:
            raise SessionNotFound()
        return self.view

    # ------------------------------------------------------------------ the client

    def hide_secret(self, secret: str | None) -> None:
        """Keep `secret` (the proxy's password) out of every log line this process writes from now on."""
        redact.hide([secret])

    def new_client(self, options: ClientOptions) -> WhatsAppClient:
        self.client = self._client_factory(options)
        return self.client

    def connected(self) -> bool:
        """Whether this process holds the WhatsApp connection now (its client runs and is logged in)."""
        view = self.view
        running = self.client is not None and self.client_running
        return running and view is not None and view.status == SessionStatus.CONNECTED

    def client_if_connected(self) -> WhatsAppClient:
        if not self.connected():
            raise SessionNotConnected()
        assert self.client is not None
        return self.client

    async def timed(self, call: Awaitable[T]) -> T:
        """A client call, counted: consecutive ClientTimeouts make the session report itself stuck."""
        try:
            result = await call
        except ClientTimeout:
            self.client_timeouts += 1
            raise
        self.client_timeouts = 0
        return result

    async def stop_client(self) -> None:
        if self.client is None or not self.client_running:
            return
        self.client_running = False
        try:
            await asyncio.wait_for(self.client.stop(), 3.0)
        except Exception:
            log.warning("session %s: the client did not stop cleanly", self.session_id, exc_info=True)

    def own_jid(self) -> str | None:
        """Our own number's chat id (None until paired)."""
        device = self.row.device_jid if self.row else None
        return f"{jid_user(device)}@{USER_SERVER}" if device else None

    def backoff(self, failures: int) -> float:
        ceiling = min(BACKOFF_CAP_S, self.config.backoff_base_s * 2 ** min(failures - 1, 16))
        return float(ceiling * random.uniform(0.5, 1.0))

    # ------------------------------------------------------------------ durable writes

    async def take_over_files(self) -> None:
        """Once per process, before its spool and outbox are opened: its predecessors' files elsewhere."""
        if self._take_over is not None:
            await self._take_over()
            self._take_over = None

    def open_journal(self, apply: Apply, together: Together | None = None) -> Journal:
        """The journal over this session's spool (once: a later call returns the same one)."""
        if self.journal is None:
            self.journal = Journal(self._open_spool(), apply, f"session {self.session_id}", together)
        return self.journal

    def write(self, entry: Write) -> None:
        """Make `entry` durable now; PostgreSQL gets it in order, when it answers."""
        assert self.journal is not None
        try:
            self.journal.write(entry)
        except SpoolFull:
            log.error("session %s: spool full; %s lost", self.session_id, type(entry).__name__)
            raise

    # ------------------------------------------------------------------ state

    def update(self, **changes: Any) -> None:
        if self.view is not None:
            self.view = replace(self.view, **changes)
            self.beat()

    def beat(self) -> None:
        """Tell the heartbeat what the process shows now (connected: its client is logged in)."""
        view = self.view
        if view is None:
            return
        connected = view.status == SessionStatus.CONNECTED and self.client is not None
        self.heartbeat.show(Beat(connected, view.qr, view.qr_expires_at, view.pairing_code))

    async def set_state(self, status: SessionStatus, reason: Reason | None) -> None:
        if self.view is None or self.closing:
            return
        changed = (self.view.status, self.view.reason) != (status, reason)
        if changed:
            self.write(SaveState(status, reason))
        if status != SessionStatus.QR_READY:
            self.update(qr=None, qr_expires_at=None)
        self.update(status=status, reason=reason)
        if changed:
            log.info("session %s: %s%s", self.session_id, status, f" ({reason})" if reason else "")
            # A client that waits for this frame and then reads the status finds it (the documented flow).
            assert self.journal is not None
            await self.journal.wait_drained(STORED_WAIT_S)
        await self.bus.publish("status", status_payload(self.view))

    # ------------------------------------------------------------------ the end of this process

    async def recycle(self, why: str, *, superseded: bool = False) -> None:
        """Give up this process: release what we can within a bound, then exit so Ray starts a fresh one
        (`superseded`: another process holds the lease, and this one leaves without a word to Ray).

        The journal's spool stays on disk: the next process applies what is left before anything else.
        """
        log.warning("session %s: recycling the process: %s", self.session_id, why)
        self.closing = True
        await self.heartbeat.stop()
        await self.stop_client()
        if self.journal is not None:
            await self.journal.wait_drained(RECYCLE_DRAIN_S)
            await self.journal.close()
        await self.lease.release()
        await self.bus.close()
        await self.store.close()
        (self._leave_superseded if superseded else self._exit_process)(why)

    async def _superseded(self, why: str) -> None:
        await self.recycle(why, superseded=True)

    async def recycle_later(self, delay_s: float, why: str) -> None:
        await asyncio.sleep(delay_s)
        await self.recycle(why)
