"""What every part of a session shares: its settings, its state, durable writes and the state change.

`SessionBase` holds the attributes; `actors.session_transitions`, `actors.session_boot` and
`actors.session_sends` add the rest, and `actors.session.SessionCore` puts them together.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from actors.bus import EventBus
from actors.heartbeat import Beat, Heartbeat
from actors.journal import Journal
from actors.ledger import SendLedger
from actors.ports import ClientOptions, WhatsAppClient
from actors.ports import SessionStorePort as Store
from actors.presence import PresenceGate
from actors.spool import Spool, SpoolFull
from actors.tasks import TaskGroup
from actors.writes import SaveState, Write
from kernel.domain import Reason, SessionStatus, SessionView
from kernel.errors import SessionNotFound, SessionUnavailable
from kernel.stored import StoredSession
from kernel.wire import EVENTS_RETAINED, status_payload

log = logging.getLogger(__name__)

BACKOFF_CAP_S = 300.0
BOOT_RETRY_MAX_S = 5.0
# How long a pairing waits for its device to reach PostgreSQL (to report a phone paired elsewhere).
PAIRING_SETTLE_S = 3.0
# Consecutive client calls that time out before the session reports itself stuck.
STUCK_AFTER_TIMEOUTS = 3
CLOSE_DRAIN_S = 10.0
RECYCLE_DRAIN_S = 2.0
HEARTBEAT_S = 5.0
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


ClientFactory = Callable[[ClientOptions], WhatsAppClient]


class SessionBase:
    """A session's state and the steps every other part of it uses."""

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
        self._pump_task: asyncio.Task[None] | None = None  # reads the client's events (session_boot)
        self._journal: Journal | None = None
        self._ledger: SendLedger | None = None
        self._boot_error: str | None = None
        self._client_timeouts = 0
        self._presence: PresenceGate | None = None  # contacts' typing/online frames (session_transitions)
        # What the API reads to tell whether this process is up and connected, and its QR / pairing code.
        self._heartbeat = Heartbeat(store, self._tasks, session_id, config.heartbeat_s)

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

    @property
    def failed(self) -> int:
        """Writes set aside because PostgreSQL could not apply them (see `replay_failed`)."""
        return self._journal.failed if self._journal is not None else 0

    @property
    def refused(self) -> str | None:
        """Why the database refuses this session's writes right now (read-only, full), or None."""
        outage = self._journal.outage if self._journal is not None else None
        return str(outage.why) if outage is not None and outage.refuses_writes else None

    def replay_failed(self) -> int:
        """Requeue the writes set aside (their cause is fixed); how many. SessionUnavailable while booting.

        The session's current state is written after them: a state entry among them is older than it.
        """
        if self._journal is None:
            raise SessionUnavailable(retry_after=2)
        count = self._journal.replay_failed()
        if count and self._view is not None and not self._closing:
            self._write(SaveState(self._view.status, self._view.reason))
        return count

    def _backoff(self, failures: int) -> float:
        ceiling = min(BACKOFF_CAP_S, self._config.backoff_base_s * 2 ** min(failures - 1, 16))
        return float(ceiling * random.uniform(0.5, 1.0))

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
        await self._heartbeat.stop()
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

    # ------------------------------------------------------------------ durable writes

    def _write(self, entry: Write) -> None:
        """Make `entry` durable now; PostgreSQL gets it in order, when it answers."""
        assert self._journal is not None
        try:
            self._journal.write(entry)
        except SpoolFull:
            log.error("session %s: spool full; %s lost", self.session_id, type(entry).__name__)
            raise

    # ------------------------------------------------------------------ state

    def _update(self, **changes: Any) -> None:
        if self._view is not None:
            self._view = replace(self._view, **changes)
            self._beat()

    def _beat(self) -> None:
        """Tell the heartbeat what the process shows now (connected: its client is logged in)."""
        view = self._view
        if view is None:
            return
        connected = view.status == SessionStatus.CONNECTED and self._client is not None
        self._heartbeat.show(Beat(connected, view.qr, view.qr_expires_at, view.pairing_code))

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
            # A client that waits for this frame and then reads the status finds it (the documented flow).
            assert self._journal is not None
            await self._journal.wait_drained(STORED_WAIT_S)
        await self._bus.publish("status", status_payload(self._view))
