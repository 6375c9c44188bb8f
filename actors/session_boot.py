"""A session's lifecycle: boot (retried until PostgreSQL answers), the dial, the event pump, close."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace

from actors.journal import Journal
from actors.ledger import SendLedger
from actors.ports import ClientOptions, WhatsAppClient
from actors.session_base import BOOT_RETRY_MAX_S
from actors.session_transitions import SessionTransitions
from actors.writes import applier
from kernel.domain import TERMINAL_REASONS, Reason, SessionStatus
from kernel.errors import ServiceUnavailable
from kernel.events import Connected, Disconnected, LoggedOut, Paired, PairingCode, Presence, QrCode
from kernel.stored import StoredSession

log = logging.getLogger(__name__)

# What only changes a session's connection state (or is ephemeral): ignored once it is closing.
_CONNECTION_EVENTS = (QrCode, PairingCode, Paired, Connected, Disconnected, LoggedOut, Presence)


class SessionLifecycle(SessionTransitions):
    """Start, boot, connect, pump events, close."""

    def start(self) -> None:
        """Begin (idempotent): load the row, then connect unless the session waits for the user."""
        if not self._started:
            self._started = True
            self._tasks.spawn(self._boot(), "boot")

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
            except Exception as err:
                # Not a dependency that is away (a spool refused, a bug): a fresh process is the only
                # retry that can differ.
                log.exception("session %s: boot failed", self.session_id)
                self._boot_error = f"boot failed: {err}"
                await asyncio.sleep(BOOT_RETRY_MAX_S)
                await self.recycle(self._boot_error)
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
        self._beat()  # up, not connected yet: the stored status is a predecessor's until the dial ends
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
            self._bus.restore()  # frames an earlier process could not send go out before any new one
            apply = applier(self._store, self._bus, self._phone_taken)
            self._journal = Journal(self._open_spool(), apply, f"session {self.session_id}")
            self._ledger = SendLedger(self.session_id, self._store.send_records, self._journal)
        await self._journal.flush()
        row = await self._store.load()
        if row is not None:
            assert self._ledger is not None
            await self._ledger.load(row.view.user_id)
        return row

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
        self._pump_task = self._tasks.spawn(self._pump(client), "events")
        self._client_running = True
        try:
            await asyncio.wait_for(client.connect(), self._config.connect_timeout_s)
        except TimeoutError:
            await self._dial_failed("connect() hung")

    async def _pump(self, client: WhatsAppClient) -> None:
        async for event in client.events():
            if self._closing and isinstance(event, _CONNECTION_EVENTS):
                # This process is going away: nothing more it hears may change the state. What the
                # network handed over (messages, receipts...) is still written: whatsmeow acked it.
                continue
            try:
                await self._handle(event)
            except Exception:
                log.exception("session %s: handling %s failed", self.session_id, type(event).__name__)

    async def close(self, *, purge: bool) -> None:
        """Stop for good (the registry kills the actor next); purge also unlinks and drops the store.

        Without purge, what the journal holds is applied first (within `close_drain_s`), so a session
        stopped here and started on another node loses nothing that reached PostgreSQL in time.
        """
        self._closing = True
        self._disarm()
        await self._heartbeat.stop()
        if purge and self._client is not None and self._client_running:
            try:
                await asyncio.wait_for(self._client.logout(), 5.0)
            except Exception:
                log.warning("session %s: logout failed; deleting locally", self.session_id, exc_info=True)
        await self._stop_client()
        if not purge and self._pump_task is not None:
            # The stopped client's events end once what it had queued is read (a message arriving
            # just before a drain's stop would be lost otherwise: tests/test_drain.py).
            await asyncio.wait({self._pump_task}, timeout=self._config.close_drain_s)
        await self._tasks.cancel_all()
        journal, self._journal = self._journal, None
        if journal is not None:
            if not purge and not await journal.wait_drained(self._config.close_drain_s):
                log.warning("session %s: %d writes still spooled at close", self.session_id, journal.backlog)
            await journal.close()
        if purge:
            await self._store.inbox.purge()
        await self._bus.close()
        await self._store.close()
