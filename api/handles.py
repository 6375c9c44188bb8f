"""Calls from the API to the session actors and the registry: a typed client over `api.named_actors`.

`SessionActors` mirrors `SessionActor` (one method each, the session id first) and the registry's
public calls. Each calls through a method of `actors.calls`' Protocols (`SessionCalls.send_text`), never
a string: the method's name is what Ray calls, its signature what mypy checks the arguments and the
result against, and the actors' conformance lines tie the Protocols to the actor classes.

The API holds no session state. Every call has a timeout (sends a longer one); how a handle is found and
what a failed call means (503, 504 for a send whose outcome is unknown, the actor's own error) is
`api.named_actors`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from actors.calls import RegistryCalls, SessionCalls, SimulatedSessionCalls
from actors.pictures import PictureState
from actors.supervision import Pending, Replayed, Writes
from actors.tasks import TaskGroup
from api.media_stream import MediaDownload
from api.metrics import Metrics
from api.named_actors import NamedActors
from api.unavailable import ActorUnreachable as ActorUnreachable
from kernel.domain import ContactInfo, Message, NumberCheck, Placement, SendResult, SessionView
from kernel.errors import ServiceUnavailable, WaError
from kernel.groups import GroupInfo, MemberChange, MemberOutcome
from kernel.ids import actor_name
from kernel.message_kinds import OutgoingContent

if TYPE_CHECKING:
    from actors.calls import NetworkControls

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S", bound=SessionCalls)

CALL_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0
MEDIA_SEND_TIMEOUT_S = 90.0
MAX_BACKGROUND = 64  # background calls in flight at most


class SessionActors:
    """Typed calls to `SessionActor`s by session id and to the registry, each within a timeout."""

    def __init__(
        self,
        namespace: str,
        metrics: Metrics,
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        send_timeout_s: float = SEND_TIMEOUT_S,
        media_send_timeout_s: float = MEDIA_SEND_TIMEOUT_S,
    ) -> None:
        self._actors = NamedActors(namespace, metrics, call_timeout_s=call_timeout_s)
        self._send_timeout_s = send_timeout_s
        self._media_send_timeout_s = media_send_timeout_s
        self._background = TaskGroup("session calls")  # what reads ask of sessions without waiting

    async def close(self) -> None:
        await self._background.cancel_all()
        self._actors.close()

    # ------------------------------------------------------------------ SessionActor

    async def status(self, session_id: str, *, timeout_s: float | None = None) -> SessionView:
        return await self._on(session_id, SessionCalls.status, timeout_s=timeout_s)()

    async def pairing_code(self, session_id: str, phone: str, *, timeout_s: float | None = None) -> str:
        return await self._on(session_id, SessionCalls.pairing_code, timeout_s=timeout_s)(phone)

    async def restart_pairing(self, session_id: str) -> None:
        await self._on(session_id, SessionCalls.restart_pairing)()

    async def use_proxy(self, session_id: str) -> bool:
        return await self._on(session_id, SessionCalls.use_proxy)()

    async def send_text(
        self,
        session_id: str,
        to: str,
        text: str,
        quoted_id: str | None = None,
        *,
        idempotency_key: str | None,
        typing_ms: int = 0,
    ) -> SendResult:
        send = self._on(session_id, SessionCalls.send_text, timeout_s=self._send_timeout_s, sends=True)
        return await send(to, text, quoted_id, idempotency_key=idempotency_key, typing_ms=typing_ms)

    async def send_media(
        self,
        session_id: str,
        to: str,
        data: bytes,
        file_name: str | None,
        mimetype: str | None,
        caption: str | None,
        *,
        idempotency_key: str | None,
        typing_ms: int = 0,
    ) -> SendResult:
        send = self._on(session_id, SessionCalls.send_media, timeout_s=self._media_send_timeout_s, sends=True)
        return await send(
            to, data, file_name, mimetype, caption, idempotency_key=idempotency_key, typing_ms=typing_ms
        )

    async def send_voice_note(
        self, session_id: str, to: str, data: bytes, *, idempotency_key: str | None, typing_ms: int = 0
    ) -> SendResult:
        send = self._on(
            session_id, SessionCalls.send_voice_note, timeout_s=self._media_send_timeout_s, sends=True
        )
        return await send(to, data, idempotency_key=idempotency_key, typing_ms=typing_ms)

    async def send_content(
        self,
        session_id: str,
        to: str,
        content: OutgoingContent,
        *,
        idempotency_key: str | None,
        typing_ms: int = 0,
    ) -> SendResult:
        """A location, a contact card or a poll."""
        send = self._on(session_id, SessionCalls.send_content, timeout_s=self._send_timeout_s, sends=True)
        return await send(to, content, idempotency_key=idempotency_key, typing_ms=typing_ms)

    async def check_numbers(self, session_id: str, phones: list[str]) -> list[NumberCheck]:
        """Which of `phones` are on WhatsApp (one round trip)."""
        return await self._on(session_id, SessionCalls.check_numbers, timeout_s=self._send_timeout_s)(phones)

    async def contact(self, session_id: str, contact_id: str) -> ContactInfo:
        return await self._on(session_id, SessionCalls.contact, timeout_s=self._send_timeout_s)(contact_id)

    async def set_blocked(self, session_id: str, contact_id: str, blocked: bool) -> None:
        block = self._on(session_id, SessionCalls.set_blocked, timeout_s=self._send_timeout_s)
        await block(contact_id, blocked)

    async def groups(self, session_id: str) -> list[GroupInfo]:
        return await self._on(session_id, SessionCalls.groups, timeout_s=self._send_timeout_s)()

    async def group(self, session_id: str, group_id: str) -> GroupInfo:
        return await self._on(session_id, SessionCalls.group, timeout_s=self._send_timeout_s)(group_id)

    async def create_group(self, session_id: str, subject: str, participants: list[str]) -> GroupInfo:
        create = self._on(session_id, SessionCalls.create_group, timeout_s=self._send_timeout_s)
        return await create(subject, participants)

    async def change_members(
        self, session_id: str, group_id: str, participants: list[str], change: MemberChange
    ) -> list[MemberOutcome]:
        members = self._on(session_id, SessionCalls.change_members, timeout_s=self._send_timeout_s)
        return await members(group_id, participants, change)

    async def invite_link(self, session_id: str, group_id: str, reset: bool) -> str:
        link = self._on(session_id, SessionCalls.invite_link, timeout_s=self._send_timeout_s)
        return await link(group_id, reset)

    async def media(self, session_id: str, chat_id: str, message_id: str) -> MediaDownload:
        """The message's media as a stream (`api.media_stream`): its head now, failures as from any call."""
        return await self._stream(session_id, SessionCalls.media, MediaDownload.open)(chat_id, message_id)

    async def mark_read(self, session_id: str, chat_id: str) -> None:
        await self._on(session_id, SessionCalls.mark_read)(chat_id)

    async def read_chat(self, session_id: str, chat_id: str) -> tuple[str, int]:
        """The chat read (its id as the session keys it) and the read receipts sent."""
        return await self._on(session_id, SessionCalls.read_chat)(chat_id)

    async def react(self, session_id: str, chat_id: str, message_id: str, emoji: str) -> Message:
        return await self._on(session_id, SessionCalls.react)(chat_id, message_id, emoji)

    async def edit(self, session_id: str, chat_id: str, message_id: str, text: str) -> Message:
        return await self._on(session_id, SessionCalls.edit)(chat_id, message_id, text)

    async def revoke(self, session_id: str, chat_id: str, message_id: str) -> Message:
        return await self._on(session_id, SessionCalls.revoke)(chat_id, message_id)

    async def typing(self, session_id: str, chat_id: str, state: str) -> bool:
        return await self._on(session_id, SessionCalls.typing)(chat_id, state)

    async def chat_picture(
        self, session_id: str, chat_id: str, *, timeout_s: float | None = None
    ) -> tuple[bytes, str]:
        """A chat's (or our own number's) picture: its bytes and mimetype."""
        return await self._on(session_id, SessionCalls.chat_picture, timeout_s=timeout_s)(chat_id)

    async def refresh_pictures(self, session_id: str, stored: dict[str, PictureState]) -> int:
        """Have the session fetch these chats' pictures (as stored) if they need it; how many it started."""
        return await self._on(session_id, SessionCalls.refresh_pictures)(stored)

    def refresh_pictures_soon(self, session_id: str, stored: dict[str, PictureState]) -> None:
        """`refresh_pictures` in the background: a read never waits for a session (nor fails for it)."""
        if len(self._background) >= MAX_BACKGROUND:
            return  # the sessions are slow to answer: the next listing asks again
        self._background.spawn(self._quietly(self.refresh_pictures(session_id, stored)), "pictures")

    async def _quietly(self, call: Awaitable[Any]) -> None:
        try:
            await call
        except WaError as err:
            log.debug("background call not answered: %s", err.code)

    def control(
        self,
        session_id: str,
        method: Callable[Concatenate[NetworkControls, P], Awaitable[R]],
        *,
        timeout_s: float | None = None,
    ) -> Callable[P, Awaitable[R]]:
        """A control of the simulated network (`NetworkControls.scan`...) on the session's process."""

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            run = self._on(session_id, SimulatedSessionCalls.control, timeout_s=timeout_s)
            result: R = await run(method.__name__, args, dict(kwargs))
            return result

        return call

    # ------------------------------------------------------------------ SessionRegistry

    async def ensure_session(self, session_id: str, *, timeout_s: float | None = None) -> None:
        await self._registry(RegistryCalls.ensure_session, timeout_s=timeout_s)(session_id)

    async def destroy_session(self, session_id: str, *, timeout_s: float | None = None) -> bool:
        return await self._registry(RegistryCalls.destroy_session, timeout_s=timeout_s)(session_id)

    async def where(self, session_id: str, *, timeout_s: float | None = None) -> Placement:
        return await self._registry(RegistryCalls.where, timeout_s=timeout_s)(session_id)

    async def pending(self, *, timeout_s: float | None = None) -> Pending:
        """Sessions whose actor waits for a node with a free `wa_session` unit (or a restart)."""
        return await self._registry(RegistryCalls.pending, timeout_s=timeout_s)()

    async def writes(self, *, timeout_s: float | None = None) -> Writes:
        """What the sessions' journals reported: spooled, set aside, refused by the database."""
        return await self._registry(RegistryCalls.writes, timeout_s=timeout_s)()

    async def replay_failed(self, session_id: str | None = None) -> list[Replayed]:
        """Sessions requeue the writes they set aside (`whatsapp-bridge spool replay`)."""
        return await self._registry(RegistryCalls.replay_failed)(session_id)

    # ------------------------------------------------------------------ internals

    def _on(
        self,
        session_id: str,
        method: Callable[Concatenate[S, P], Awaitable[R]],
        *,
        timeout_s: float | None = None,
        sends: bool = False,
    ) -> Callable[P, Awaitable[R]]:
        """`method` of `SessionCalls` on the session's actor: called with its own arguments, its result."""

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            name = actor_name(session_id)
            result: R = await self._actors.call(name, method.__name__, args, kwargs, timeout_s, sends=sends)
            return result

        return call

    def _stream(
        self,
        session_id: str,
        method: Callable[Concatenate[SessionCalls, P], AsyncIterator[Any]],
        opener: Callable[[Any], Awaitable[T]],
    ) -> Callable[P, Awaitable[T]]:
        """A streaming `method` of `SessionCalls`: what `opener` makes of its `ObjectRefGenerator`."""

        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            name = actor_name(session_id)
            opened: T = await self._actors.call(
                name, method.__name__, args, kwargs, None, sends=False, opener=opener
            )
            return opened

        return call

    def _registry(
        self,
        method: Callable[Concatenate[RegistryCalls, P], Awaitable[R]],
        *,
        timeout_s: float | None = None,
    ) -> Callable[P, Awaitable[R]]:
        """`method` of `RegistryCalls` on the registry; ServiceUnavailable when it cannot be reached."""
        from actors.registry import REGISTRY_NAME

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                result: R = await self._actors.call(
                    REGISTRY_NAME, method.__name__, args, kwargs, timeout_s, sends=False
                )
            except ActorUnreachable as err:
                raise ServiceUnavailable("The session registry is unavailable, try again shortly") from err
            return result

        return call
