"""Calls from the API to the session actors and the registry: a typed client, cached handles, bounded waits.

`SessionActors` mirrors `SessionActor` (one method each, the session id first) and the registry's
public calls. Each calls through a method of `actors.calls`' Protocols (`SessionCalls.send_text`), never
a string: the method's name is what Ray calls, its signature what mypy checks the arguments and the
result against, and the actors' conformance lines tie the Protocols to the actor classes.

The API holds no session state: a handle is only a cached address. Every call has a timeout. What a
failure means is `api.unavailable.as_wa_error`'s answer: an actor that is missing, dead, restarting or
too slow is `ActorUnreachable` (503 + Retry-After); a domain error raised in the actor is re-raised
here as itself (Ray wraps it in a `RayTaskError`).

Sends are the exception to "unreachable means retry": once a send was submitted to the actor, a
timeout or the actor dying or becoming unreachable leaves its outcome unknown (WhatsApp may have the
message), so it is `SendOutcomeUnknown` (504): the client retries with the same Idempotency-Key and
the actor answers with the first outcome instead of sending twice. A send refused before it reached
the actor (no handle, no registry, no Ray) stays 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from actors.calls import RegistryCalls, SessionCalls, SimulatedSessionCalls
from actors.pictures import PictureState
from actors.supervision import Pending, Replayed, Writes
from actors.tasks import TaskGroup
from api import ray_driver
from api.media_stream import MediaDownload
from api.metrics import Metrics
from api.unavailable import RETRY_AFTER_S, as_wa_error, describe, ray_unavailable
from api.unavailable import ActorUnreachable as ActorUnreachable
from kernel.domain import ContactInfo, Message, NumberCheck, Placement, SendResult, SessionView
from kernel.errors import SendOutcomeUnknown, ServiceUnavailable, WaError
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
# Turns a streaming call's `ObjectRefGenerator` into what the caller gets, within its own bounds.
Opener = Callable[[Any], Awaitable[Any]]

CALL_TIMEOUT_S = 10.0
LOOKUP_TIMEOUT_S = 3.0
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
        self._namespace = namespace
        self._metrics = metrics
        self._call_timeout_s = call_timeout_s
        self._send_timeout_s = send_timeout_s
        self._media_send_timeout_s = media_send_timeout_s
        self._handles: dict[str, Any] = {}
        self._generation = 0  # of `api.ray_driver`'s driver when the handles were looked up
        # Lookups ask the GCS, which can block for long when it is gone: never on the event loop, and
        # never in the default executor that the rest of the process shares.
        self._lookups = ThreadPoolExecutor(4, thread_name_prefix="ray-lookup")
        self._background = TaskGroup("session calls")  # what reads ask of sessions without waiting

    async def close(self) -> None:
        await self._background.cancel_all()
        self._handles.clear()
        self._lookups.shutdown(wait=False, cancel_futures=True)

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
            handle = await self._handle(name)
            result: R = await self._await(name, method.__name__, handle, args, kwargs, timeout_s, sends=sends)
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
            handle = await self._handle(name)
            opened: T = await self._await(
                name, method.__name__, handle, args, kwargs, None, sends=False, opener=opener
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
                handle = await self._handle(REGISTRY_NAME)
                result: R = await self._await(
                    REGISTRY_NAME, method.__name__, handle, args, kwargs, timeout_s, sends=False
                )
            except ActorUnreachable as err:
                raise ServiceUnavailable("The session registry is unavailable, try again shortly") from err
            return result

        return call

    async def _handle(self, name: str) -> Any:
        refused = ray_unavailable()
        if refused is not None:
            raise refused
        driver = ray_driver.current()
        generation = driver.generation if driver is not None else 0
        if generation != self._generation:  # the driver connected again: old handles are another cluster's
            self._handles.clear()
            self._generation = generation
        handle = self._handles.get(name)
        if handle is not None:
            return handle
        loop = asyncio.get_running_loop()
        lookup = loop.run_in_executor(self._lookups, _get_actor, name, self._namespace)
        try:
            handle = await asyncio.wait_for(lookup, LOOKUP_TIMEOUT_S)
        except TimeoutError as err:
            raise ActorUnreachable(
                "The Ray cluster did not answer in time", retry_after=RETRY_AFTER_S
            ) from err
        except Exception as err:
            raise ActorUnreachable("The session is not running yet", retry_after=RETRY_AFTER_S) from err
        if handle is None:
            raise ActorUnreachable("The session is not running yet", retry_after=RETRY_AFTER_S)
        self._handles[name] = handle
        return handle

    async def _await(
        self,
        name: str,
        method: str,
        handle: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout_s: float | None,
        *,
        sends: bool,
        opener: Opener | None = None,
    ) -> Any:
        """The call's result within the timeout (or what `opener` makes of a streaming call's refs)."""
        outcome = "ok"
        submitted = False
        try:
            ref = getattr(handle, method).remote(*args, **kwargs)
            submitted = True
            if opener is not None:
                return await opener(ref)
            return await asyncio.wait_for(ref, timeout_s or self._call_timeout_s)
        except Exception as err:
            failure, outcome = self._failure(name, method, err, outcome_unknown=sends and submitted)
            if failure is err:
                raise
            # The actor's own error is re-raised as itself, without Ray's wrapper as its cause.
            raise failure from (None if failure is getattr(err, "cause", None) else err)
        finally:
            self._metrics.actor_calls.labels(method=method, outcome=outcome).inc()

    def _failure(
        self, name: str, method: str, err: Exception, *, outcome_unknown: bool
    ) -> tuple[Exception, str]:
        """What a failed call means to the client, and the outcome to count it under."""
        from ray.exceptions import RayError, RayTaskError

        if isinstance(err, RayTaskError) and isinstance(err.cause, WaError):
            return err.cause, err.cause.code  # the actor's own answer
        mapped = as_wa_error(err)
        if mapped is None:
            return err, "error"
        timed_out = isinstance(err, TimeoutError) and not isinstance(err, RayError)
        if timed_out:
            log.warning("%s.%s: no answer within the timeout", name, method)
        elif not isinstance(err, RayTaskError):
            # Dead, restarting or unreachable: forget the handle; the next call looks the name up again.
            self._handles.pop(name, None)
            log.info("%s.%s: actor unavailable (%s)", name, method, describe(err))
        outcome = "timeout" if timed_out else "unavailable"
        if outcome_unknown and not _never_ran(err):
            return SendOutcomeUnknown(), outcome
        if timed_out:
            return ActorUnreachable("The session did not answer in time", retry_after=RETRY_AFTER_S), outcome
        return mapped, outcome


def _never_ran(err: Exception) -> bool:
    """True when Ray says the task could not have started (the actor's constructor failed)."""
    from ray.exceptions import RayActorError

    return isinstance(err, RayActorError) and bool(getattr(err, "actor_init_failed", False))


def _get_actor(name: str, namespace: str) -> Any:
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:  # no actor of that name (yet)
        return None
