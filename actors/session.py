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
from dataclasses import replace
from typing import Any

from actors.calls import control_names
from actors.downloads import MediaStream, stream_media
from actors.session_base import STORED_WAIT_S, ClientFactory, SessionConfig
from actors.session_boot import SessionLifecycle
from actors.session_inbox import SessionInbox
from actors.writes import SaveCounters, StoreChatRead
from kernel.domain import SessionStatus, SessionView
from kernel.errors import AlreadyConnected, InvalidInput, SessionNotConnected, SessionUnavailable
from kernel.ids import to_jid
from kernel.text_rules import MAX_TEXT

__all__ = ["MAX_TEXT", "ClientFactory", "SessionConfig", "SessionCore"]


class SessionCore(SessionInbox, SessionLifecycle):
    """The state machine of one session. Every public coroutine is safe to call concurrently."""

    # ------------------------------------------------------------------ user requests

    async def view(self) -> SessionView:
        return replace(await self.wait_ready(), live=self._connected())

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
        code = await self._client.request_pairing_code(phone)
        # The client's PairingCode event says the same later; the API reads the code from the heartbeat,
        # so a caller that gets it and then reads the status finds it there (bounded, as for QR frames).
        self._update(pairing_code=code)
        await self._heartbeat.stored(STORED_WAIT_S)
        return code

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

    def media(self, chat_id: str, message_id: str) -> MediaStream:
        """The message's media: its head, then its bytes in chunks (see `actors.downloads`)."""
        chat = self._canon(to_jid(chat_id))  # a LID whose number is known: the number's chat
        return stream_media(
            self._store.inbox, self._client_if_connected, self._config.max_media_bytes, chat, message_id
        )

    async def mark_read(self, chat_id: str) -> None:
        """The seed's mark-read: `read_chat`, and without a connection the unread count alone."""
        try:
            await self.read_chat(chat_id)
        except SessionNotConnected:
            self._write(StoreChatRead(to_jid(chat_id)))

    # ------------------------------------------------------------------ the simulated network's controls

    async def simulate(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Run one of the simulated network's controls (`actors.calls.NetworkControls`) on the client."""
        await self.wait_ready()
        client = self._client
        handler = getattr(client, op, None) if op in _CONTROLS else None
        if client is None or handler is None:
            raise InvalidInput(f"simulator operation {op!r} is not available on this session")
        if op != "scan":
            return await handler(*args, **kwargs)
        loop = asyncio.get_running_loop()
        self._pairing = loop.create_future()
        pairing = self._pairing
        await handler(*args, **kwargs)
        return await asyncio.wait_for(pairing, 10.0)


_CONTROLS = control_names()
