"""`SessionActor`: the Ray shell around one `SessionCore`. One actor = one OS process = one client.

The registry creates it detached, named `session-<id>`, `num_cpus=0`, one `wa_session` unit,
`max_restarts=-1`. `__init__` only wires objects and schedules the start (Ray does not retry a failed
constructor), so a process Ray restarts after a crash resumes by itself, without the supervisor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import ray

from actors.bus import OUTBOX, OUTBOX_MAX_BYTES, EventBus
from actors.calls import SessionCalls, SimulatedSessionCalls
from actors.clients import make_client
from actors.downloads import STREAM_AHEAD, MediaStream
from actors.fleet import ProcessInfo, own_process
from actors.pictures import PictureState
from actors.ports import ClientOptions, Stores, WhatsAppClient
from actors.recycle import exit_for_restart, leave_superseded, report_restart, was_restarted
from actors.session import SessionConfig, SessionCore
from actors.spool import Spool, pending_bytes
from actors.spool_handover import ensure_keeper, take_over
from actors.writes import WRITES
from kernel import redact
from kernel.domain import ContactInfo, Message, NumberCheck, Placement, SendResult, SessionView
from kernel.groups import GroupInfo, MemberChange, MemberOutcome
from kernel.message_kinds import OutgoingContent

log = logging.getLogger(__name__)


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.hide([])  # any token, key or URL password in a line is redacted (kernel.redact)


_F = TypeVar("_F", bound=Callable[..., Any])


def _streaming(method: _F) -> _F:
    """A Ray streaming generator method, with backpressure; its type stays the method's (Ray's stub would
    make it a `_RemoteMethod`, which no Protocol can state)."""
    return cast(
        _F, ray.method(num_returns="streaming", _generator_backpressure_num_objects=STREAM_AHEAD)(method)
    )


class SessionActor:
    def __init__(self, session_id: str, config: SessionConfig, stores: Stores) -> None:
        _configure_logging()
        self._session_id = session_id
        self._backend = config.backend
        self._closed = False  # close() ran: the client is stopped for good, the process waits to be killed

        def factory(options: ClientOptions) -> WhatsAppClient:
            return make_client(config.backend, options, stores)

        self._folder = spool_folder(config)
        self._spool_path = self._folder / f"{session_id}.spool"

        def open_spool() -> Spool:
            return Spool(self._spool_path, codec=WRITES, max_bytes=config.spool_max_bytes)

        def open_outbox() -> Spool:
            return Spool(self._folder / f"{session_id}.outbox", codec=OUTBOX, max_bytes=OUTBOX_MAX_BYTES)

        async def take_files_over() -> int:
            try:
                # This node's keeper first, right before the spool opens: a later process of this session
                # on another node takes what it leaves here through it (`actors.spool_keeper`).
                await asyncio.to_thread(ensure_keeper, self._folder, config.database_dsn, stores)
            except Exception:
                log.warning("session %s: no spool keeper on this node", session_id, exc_info=True)
            return await take_over(session_id, self._folder)

        self._core = SessionCore(
            session_id,
            config,
            client_factory=factory,
            store=stores.session_store(config.database_dsn, session_id),
            bus=EventBus(
                config.redis_url, session_id, retained=config.events_retained, open_outbox=open_outbox
            ),
            open_spool=open_spool,
            # A fresh process through Ray's own restart: no crash warning on the console (actors/recycle.py).
            exit_process=functools.partial(exit_for_restart, session_id),
            leave_superseded=functools.partial(leave_superseded, session_id),
            # Every process of this actor is one owner: a newer one takes the lease over at once.
            owner=ray.get_runtime_context().get_actor_id() or f"session-{session_id}",
            take_over=take_files_over,
        )
        self._core.start()
        log.info("session %s: process %d started", session_id, os.getpid())
        try:
            report_restart(session_id)
        except Exception:  # a constructor must not fail: Ray would not retry it
            log.warning("session %s: could not tell why the process restarted", session_id, exc_info=True)

    def __repr__(self) -> str:
        # Ray reads this once per process, right after __init__ (the dashboard's and the GCS actor table's
        # `repr_name`), never again: only what a process keeps for its life belongs here, not the status.
        start = "restarted" if was_restarted() else "first"
        return (
            f"SessionActor(session={self._session_id}, backend={self._backend}, "
            f"node={ray.get_runtime_context().get_node_id()[:12]}, pid={os.getpid()}, start={start})"
        )

    async def ping(self) -> Placement:
        view = self._core.current()
        return Placement(
            session_id=self._session_id,
            node_id=ray.get_runtime_context().get_node_id(),
            pid=os.getpid(),
            status=view.status if view else None,
            alive=True,
            # A closed session never looks ready: its mover may have died before killing it, and the
            # registry gives a process stuck so a fresh one (tests/test_operations.py).
            ready=self._core.ready and not self._closed,
            stuck="closed: its client is stopped" if self._closed else self._core.stuck,
            spooled=self._core.spooled,
            failed=self._core.failed,
            refused=self._core.refused,
        )

    async def replay_failed(self) -> int:
        """Apply the writes this session set aside, once their cause is fixed (`spool replay`)."""
        return self._core.replay_failed()

    async def status(self) -> SessionView:
        return await self._core.view()

    async def process(self) -> ProcessInfo:
        """This process's pid, start time and resident memory (ops views: `actors.fleet`)."""
        return own_process()

    async def pairing_code(self, phone: str) -> str:
        return await self._core.request_pairing_code(phone)

    async def restart_pairing(self) -> None:
        await self._core.restart_pairing()

    async def use_proxy(self) -> bool:
        return await self._core.use_proxy()

    async def send_text(
        self,
        to: str,
        text: str,
        quoted_id: str | None = None,
        idempotency_key: str | None = None,
        typing_ms: int = 0,
    ) -> SendResult:
        return await self._core.send_text(to, text, quoted_id, idempotency_key, typing_ms)

    async def send_media(
        self,
        to: str,
        data: bytes,
        file_name: str | None,
        mimetype: str | None,
        caption: str | None,
        idempotency_key: str | None = None,
        typing_ms: int = 0,
    ) -> SendResult:
        return await self._core.send_media(
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
        return await self._core.send_voice_note(to, data, idempotency_key, typing_ms)

    async def send_content(
        self, to: str, content: OutgoingContent, idempotency_key: str | None = None, typing_ms: int = 0
    ) -> SendResult:
        return await self._core.send_content(to, content, idempotency_key, typing_ms)

    async def check_numbers(self, phones: list[str]) -> list[NumberCheck]:
        return await self._core.check_numbers(phones)

    async def contact(self, contact_id: str) -> ContactInfo:
        return await self._core.contact(contact_id)

    async def set_blocked(self, contact_id: str, blocked: bool) -> None:
        await self._core.set_blocked(contact_id, blocked)

    async def groups(self) -> list[GroupInfo]:
        return await self._core.groups.groups()

    async def group(self, group_id: str) -> GroupInfo:
        return await self._core.groups.group(group_id)

    async def create_group(self, subject: str, participants: list[str]) -> GroupInfo:
        return await self._core.groups.create(subject, participants)

    async def change_members(
        self, group_id: str, participants: list[str], change: MemberChange
    ) -> list[MemberOutcome]:
        return await self._core.groups.change(group_id, participants, change)

    async def invite_link(self, group_id: str, reset: bool) -> str:
        return await self._core.groups.invite_link(group_id, reset)

    async def refresh_pictures(self, stored: dict[str, PictureState]) -> int:
        return self._core.refresh_pictures(stored)

    @_streaming
    async def media(self, chat_id: str, message_id: str) -> MediaStream:
        async for item in self._core.media(chat_id, message_id):
            yield item

    async def mark_read(self, chat_id: str) -> None:
        await self._core.mark_read(chat_id)

    async def read_chat(self, chat_id: str) -> tuple[str, int]:
        return await self._core.read_chat(chat_id)

    async def react(self, chat_id: str, message_id: str, emoji: str) -> Message:
        return await self._core.react(chat_id, message_id, emoji)

    async def edit(self, chat_id: str, message_id: str, text: str) -> Message:
        return await self._core.edit(chat_id, message_id, text)

    async def revoke(self, chat_id: str, message_id: str) -> Message:
        return await self._core.revoke(chat_id, message_id)

    async def typing(self, chat_id: str, state: str) -> bool:
        return await self._core.typing(chat_id, state)

    async def chat_picture(self, chat_id: str) -> tuple[bytes, str]:
        return await self._core.chat_picture(chat_id)

    async def close(self, purge: bool) -> int:
        """Stop the client (and with purge: unlink, delete stored messages and this session's files on
        this node: spool, set-aside writes, outbox); the registry kills us next.

        Returns the bytes still in the spool on this node's disk (0: every write reached PostgreSQL).
        """
        self._closed = True
        try:
            await self._core.close(purge=purge)
        finally:
            if purge:
                for path in self._folder.glob(f"{self._session_id}.*"):
                    path.unlink(missing_ok=True)  # a link is removed, never followed
        return pending_bytes(self._spool_path)


class SimulatedSessionActor(SessionActor):
    """A session on the simulated network (`WA_BACKEND=simulated`): it also takes the network's controls
    (what the phone and WhatsApp do), which the /simulator routes and the tests drive."""

    async def control(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the `NetworkControls` method `name` on this session's simulated client."""
        return await self._core.simulate(name, *args, **kwargs)


def session_actor_class(backend: str) -> type[SessionActor]:
    """The actor class of a backend: only the simulated network's sessions take its controls."""
    return SimulatedSessionActor if backend == "simulated" else SessionActor


def spool_folder(config: SessionConfig) -> Path:
    """Where a node keeps its sessions' spools and outboxes (`SESSION_SPOOL_DIR`, else the temporary
    folder): a private folder, checked by `actors.private_files` before any file in it is used."""
    if config.spool_dir:
        return Path(config.spool_dir)
    return Path(tempfile.gettempdir()) / "whatsapp-bridge-spool"


_: type[SessionCalls] = SessionActor
_simulated: type[SimulatedSessionCalls] = SimulatedSessionActor
