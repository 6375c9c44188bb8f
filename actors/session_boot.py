"""A session's lifecycle: boot (retried until PostgreSQL answers), the dial, the event pump, close."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace

from actors.journal import Together
from actors.ports import ClientOptions, WhatsAppClient
from actors.session_sends import Sends
from actors.session_state import BOOT_RETRY_MAX_S, SessionState
from actors.session_transitions import Transitions
from actors.writes import applier
from kernel.domain import PROXY_REASONS, TERMINAL_REASONS, Reason, SessionStatus
from kernel.errors import LeaseLost, ServiceUnavailable, SessionNotFound
from kernel.events import Connected, Disconnected, LoggedOut, Paired, PairingCode, Presence, QrCode
from kernel.stored import StoredSession

log = logging.getLogger(__name__)

# What only changes a session's connection state (or is ephemeral): ignored once it is closing.
_CONNECTION_EVENTS = (QrCode, PairingCode, Paired, Connected, Disconnected, LoggedOut, Presence)


class Lifecycle:
    """Start, boot, connect, pump events, close."""

    def __init__(self, state: SessionState, transitions: Transitions, sends: Sends) -> None:
        self._state = state
        self._transitions = transitions
        self._sends = sends
        self._started = False
        self._boot_error: str | None = None  # why the last boot attempt failed (logged once)
        self._pump_task: asyncio.Task[None] | None = None  # reads the client's events

    def start(self) -> None:
        """Begin (idempotent): load the row, then connect unless the session waits for the user."""
        if not self._started:
            self._started = True
            self._state.tasks.spawn(self._boot(), "boot")

    async def _boot(self) -> None:
        session = self._state
        delay = 0.5
        while True:
            try:
                row = await self._load()
                break
            except LeaseLost:
                return  # the lease's own task ends this process
            except (ServiceUnavailable, OSError) as err:
                if self._boot_error is None:
                    log.warning("session %s: cannot load its row (%s); retrying", session.session_id, err)
                self._boot_error = str(err)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BOOT_RETRY_MAX_S)
            except Exception as err:
                # Not a dependency that is away (a spool refused, a bug): a fresh process is the only
                # retry that can differ.
                log.exception("session %s: boot failed", session.session_id)
                self._boot_error = f"boot failed: {err}"
                await asyncio.sleep(BOOT_RETRY_MAX_S)
                await session.recycle(self._boot_error)
                return
        if self._boot_error is not None:
            log.info("session %s: row loaded after the database came back", session.session_id)
            self._boot_error = None
        if session.journal is not None:
            session.journal.start()
        if row is None:
            log.warning("session %s: no row in the database; idle until stopped", session.session_id)
            session.loaded.set()
            return
        session.row = row
        session.view = replace(row.view, qr=None, qr_expires_at=None, pairing_code=None)
        session.loaded.set()
        session.beat()  # up, not connected yet: the stored status is a predecessor's until the dial ends
        waiting = row.view.reason in TERMINAL_REASONS and row.device_jid is None
        if waiting or row.qr_rounds >= session.config.qr_max_rounds:
            reason = row.view.reason or Reason.QR_TIMEOUT
            log.info("session %s: waiting for the user (%s)", session.session_id, reason)
            await session.set_state(SessionStatus.DISCONNECTED, reason)
            return
        if row.connect_failures:
            delay = session.backoff(row.connect_failures)
            log.info(
                "session %s: dial failed %d times; next try in %.1fs",
                session.session_id,
                row.connect_failures,
                delay,
            )
            await asyncio.sleep(delay)
        # A broken proxy's reason stays while the session retries through it (it is what the user must fix).
        await self._connect(row, row.view.reason if row.view.reason in PROXY_REASONS else None)

    async def _load(self) -> StoredSession | None:
        """Take the lease (waiting while another process holds it); bring what earlier processes spooled
        on other nodes here; then what they spooled goes to PostgreSQL first, in order; then the row is
        read."""
        session = self._state
        try:
            await session.lease.take()
        except SessionNotFound:
            return None
        if session.journal is None:
            await session.take_over_files()
            session.bus.restore()  # frames an earlier process could not send go out before any new one
        apply, together = applier(session.store, session.bus, self._transitions.phone_taken)
        guard = session.lease.guard
        journal = session.open_journal(guard(apply), Together(guard(together.apply), together.admits))
        await journal.flush()
        row = await session.store.load()
        if row is not None:
            await self._sends.load(journal, row.view.user_id)
        return row

    async def _connect(self, row: StoredSession, reason: Reason | None) -> None:
        session = self._state
        config = session.config
        options = ClientOptions(
            session_id=session.session_id,
            device_jid=row.device_jid,
            auth_dsn=config.auth_dsn,
            qr_first_s=config.qr_first_s,
            qr_next_s=config.qr_next_s,
            qr_codes=config.qr_codes,
            proxy=row.proxy,
        )
        client = session.new_client(options)
        if row.proxy is not None:
            session.hide_secret(row.proxy.password)
        await session.set_state(SessionStatus.CONNECTING, reason)
        self._transitions.arm(config.connect_timeout_s, "connect did not finish", action="dial_failed")
        self._pump_task = session.tasks.spawn(self._pump(client), "events")
        session.client_running = True
        try:
            await asyncio.wait_for(client.connect(), config.connect_timeout_s)
        except TimeoutError:
            await self._transitions.dial_failed("connect() hung")

    async def _pump(self, client: WhatsAppClient) -> None:
        session = self._state
        async for event in client.events():
            if session.closing and isinstance(event, _CONNECTION_EVENTS):
                # This process is going away: nothing more it hears may change the state. What the
                # network handed over (messages, receipts...) is still written: whatsmeow acked it.
                continue
            try:
                await self._transitions.handle(event)
            except Exception:
                log.exception("session %s: handling %s failed", session.session_id, type(event).__name__)

    async def close(self, *, purge: bool) -> None:
        """Stop for good (the registry kills the actor next); purge also unlinks and drops the store.

        Without purge, what the journal holds is applied first (within `close_drain_s`), so a session
        stopped here and started on another node loses nothing that reached PostgreSQL in time.
        """
        session = self._state
        session.closing = True
        self._transitions.disarm()
        await session.heartbeat.stop()
        if purge and session.client is not None and session.client_running:
            try:
                await asyncio.wait_for(session.client.logout(), 5.0)
            except Exception:
                log.warning("session %s: logout failed; deleting locally", session.session_id, exc_info=True)
        await session.stop_client()
        if not purge and self._pump_task is not None:
            # The stopped client's events end once what it had queued is read (a message arriving
            # just before a drain's stop would be lost otherwise: tests/test_drain.py).
            await asyncio.wait({self._pump_task}, timeout=session.config.close_drain_s)
        await session.tasks.cancel_all()
        journal, session.journal = session.journal, None
        if journal is not None:
            if not purge and not await journal.wait_drained(session.config.close_drain_s):
                log.warning(
                    "session %s: %d writes still spooled at close", session.session_id, journal.backlog
                )
            await journal.close()
        await session.lease.release()
        if purge:
            await session.store.inbox.purge()
        await session.bus.close()
        await session.store.close()
