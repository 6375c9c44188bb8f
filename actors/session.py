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
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from actors.bus import EventBus
from actors.calls import control_names
from actors.downloads import MediaStream, stream_media
from actors.incoming_calls import IncomingCalls
from actors.pictures import PictureState
from actors.ports import SessionStorePort as Store
from actors.session_boot import Lifecycle
from actors.session_contacts import Contacts
from actors.session_groups import Groups
from actors.session_inbox import Inbox
from actors.session_sends import Sends
from actors.session_state import STORED_WAIT_S, ClientFactory, SessionConfig, SessionState
from actors.session_transitions import Transitions
from actors.spool import Spool
from actors.writes import SaveCounters
from kernel.domain import (
    TERMINAL_REASONS,
    ContactInfo,
    Message,
    NumberCheck,
    SendResult,
    SessionStatus,
    SessionView,
)
from kernel.errors import AlreadyConnected, InvalidInput, SessionUnavailable
from kernel.ids import to_jid
from kernel.message_kinds import OutgoingContent
from kernel.text_rules import MAX_TEXT

__all__ = ["MAX_TEXT", "ClientFactory", "SessionConfig", "SessionCore"]


class SessionCore:
    """The state machine of one session. Every public coroutine is safe to call concurrently.

    Its parts, each built here with what it needs: `state` (what they all share, the lease among it:
    `actors.lease`), `contacts` (scope,
    identity links, names, pictures), `transitions` (what each WhatsApp event does, watchdogs), `sends`,
    `inbox` (reads, reactions, edits, typing) and `lifecycle` (boot, dial, event pump, close).
    """

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
        self._state = SessionState(
            session_id,
            config,
            client_factory=client_factory,
            store=store,
            bus=bus,
            open_spool=open_spool,
            exit_process=exit_process,
            leave_superseded=leave_superseded,
            owner=owner,
            take_over=take_over,
        )
        self._contacts = Contacts(self._state)
        self._sends = Sends(self._state, self._contacts)
        self._transitions = Transitions(self._state, self._contacts, IncomingCalls(self._state, self._sends))
        self._inbox = Inbox(self._state, self._contacts)
        self.groups = Groups(self._state)
        self._lifecycle = Lifecycle(self._state, self._transitions, self._sends)

    # ------------------------------------------------------------------ the process

    def start(self) -> None:
        """Begin (idempotent): load the row, then connect unless the session waits for the user."""
        self._lifecycle.start()

    async def close(self, *, purge: bool) -> None:
        await self._lifecycle.close(purge=purge)

    async def recycle(self, why: str) -> None:
        await self._state.recycle(why)

    @property
    def ready(self) -> bool:
        return self._state.loaded.is_set()

    @property
    def stuck(self) -> str | None:
        return self._state.stuck

    @property
    def spooled(self) -> int:
        return self._state.spooled

    @property
    def failed(self) -> int:
        return self._state.failed

    @property
    def refused(self) -> str | None:
        return self._state.refused

    def replay_failed(self) -> int:
        return self._state.replay_failed()

    # ------------------------------------------------------------------ user requests

    async def view(self) -> SessionView:
        return replace(await self._state.wait_ready(), live=self._state.connected())

    def current(self) -> SessionView | None:
        """The view as it stands now (None while the row is still loading)."""
        return self._state.view

    async def request_pairing_code(self, phone: str) -> str:
        session = self._state
        view = await session.wait_ready()
        if view.status == SessionStatus.CONNECTED:
            raise AlreadyConnected()
        if session.client is None or not session.client_running or (session.row and session.row.device_jid):
            await self.restart_pairing()
        assert session.client is not None
        code = await session.client.request_pairing_code(phone)
        # The client's PairingCode event says the same later; the API reads the code from the heartbeat,
        # so a caller that gets it and then reads the status finds it there (bounded, as for QR frames).
        session.update(pairing_code=code)
        await session.heartbeat.stored(STORED_WAIT_S)
        return code

    async def restart_pairing(self) -> None:
        """Start pairing afresh after `logged_out` / `qr_timeout`: a fresh process shows new codes.

        Raises SessionUnavailable: the caller retries once the new process is up.
        """
        session = self._state
        view = await session.wait_ready()
        if view.status == SessionStatus.CONNECTED:
            raise AlreadyConnected()
        session.write(SaveCounters(qr_rounds=0, connect_failures=0))
        await session.set_state(SessionStatus.CONNECTING, None)
        session.tasks.spawn(session.recycle_later(0.2, "pairing requested"), "recycle")
        raise SessionUnavailable("A new pairing round is starting; retry shortly", retry_after=2)

    async def use_proxy(self) -> bool:
        """The number's proxy changed in PostgreSQL: a fresh process dials through it now (False: the
        session waits for the user, and its next pairing round dials through it)."""
        session = self._state
        view = await session.wait_ready()
        row = session.row
        waiting = row is not None and row.device_jid is None and view.reason in TERMINAL_REASONS
        if waiting or session.closing:
            return False
        session.tasks.spawn(session.recycle_later(0.2, "the proxy changed"), "recycle")
        return True

    async def send_text(
        self,
        to: str,
        text: str,
        quoted_id: str | None = None,
        idempotency_key: str | None = None,
        typing_ms: int = 0,
    ) -> SendResult:
        return await self._sends.send_text(to, text, quoted_id, idempotency_key, typing_ms)

    async def send_media(
        self,
        to: str,
        data: bytes,
        *,
        file_name: str | None,
        mimetype: str | None,
        caption: str | None,
        idempotency_key: str | None = None,
        typing_ms: int = 0,
    ) -> SendResult:
        return await self._sends.send_media(
            to,
            data,
            file_name=file_name,
            mimetype=mimetype,
            caption=caption,
            idempotency_key=idempotency_key,
            typing_ms=typing_ms,
        )

    async def send_voice_note(
        self, to: str, data: bytes, idempotency_key: str | None = None, typing_ms: int = 0
    ) -> SendResult:
        return await self._sends.send_voice_note(to, data, idempotency_key, typing_ms)

    async def send_content(
        self, to: str, content: OutgoingContent, idempotency_key: str | None = None, typing_ms: int = 0
    ) -> SendResult:
        return await self._sends.send_content(to, content, idempotency_key, typing_ms)

    async def check_numbers(self, phones: list[str]) -> list[NumberCheck]:
        await self._state.wait_ready()
        return await self._sends.reach.check(phones)

    async def contact(self, contact_id: str) -> ContactInfo:
        return await self._contacts.contact(contact_id)

    async def set_blocked(self, contact_id: str, blocked: bool) -> None:
        await self._contacts.set_blocked(contact_id, blocked)

    def media(self, chat_id: str, message_id: str) -> MediaStream:
        """The message's media: its head, then its bytes in chunks (see `actors.downloads`)."""
        chat = self._contacts.canon(to_jid(chat_id))  # a LID whose number is known: the number's chat
        session = self._state
        return stream_media(
            session.store.inbox, session.client_if_connected, session.config.max_media_bytes, chat, message_id
        )

    async def mark_read(self, chat_id: str) -> None:
        await self._inbox.mark_read(chat_id)

    async def read_chat(self, chat_id: str) -> tuple[str, int]:
        return await self._inbox.read_chat(chat_id)

    async def react(self, chat_id: str, message_id: str, emoji: str) -> Message:
        return await self._inbox.react(chat_id, message_id, emoji)

    async def edit(self, chat_id: str, message_id: str, text: str) -> Message:
        return await self._inbox.edit(chat_id, message_id, text)

    async def revoke(self, chat_id: str, message_id: str) -> Message:
        return await self._inbox.revoke(chat_id, message_id)

    async def typing(self, chat_id: str, state: str) -> bool:
        return await self._inbox.typing(chat_id, state)

    def refresh_pictures(self, stored: dict[str, PictureState]) -> int:
        return self._contacts.refresh_pictures(stored)

    async def chat_picture(self, chat_id: str) -> tuple[bytes, str]:
        return await self._contacts.chat_picture(chat_id)

    # ------------------------------------------------------------------ the simulated network's controls

    async def simulate(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Run one of the simulated network's controls (`actors.calls.NetworkControls`) on the client."""
        await self._state.wait_ready()
        client = self._state.client
        handler = getattr(client, op, None) if op in _CONTROLS else None
        if client is None or handler is None:
            raise InvalidInput(f"simulator operation {op!r} is not available on this session")
        if op != "scan":
            return await handler(*args, **kwargs)
        pairing = self._transitions.expect_pairing()
        await handler(*args, **kwargs)
        return await asyncio.wait_for(pairing, 10.0)


_CONTROLS = control_names()
