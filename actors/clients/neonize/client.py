"""`NeonizeClient`: the WhatsAppClient for real WhatsApp, on neonize's async client (whatsmeow in Go).

Invariants (each one keeps the whole process alive; see /work/shared/notes/neonize.md):
- One client per process, never the same Go uuid twice (`runtime.claim`). The uuid is the session id for
  a new device, the phone number (`jid.User`, neonize's rule) when resuming.
- Never start with neither `jid` nor `new_device` (whatsmeow would resume another account), and never
  with a `jid` whose `whatsmeow_device` row is missing (segfault): `connect()` checks the row first and
  emits `LoggedOut` without touching Go.
- No FFI call before Go has registered the uuid or after `stop()` (nil dereference in Go). Go registers
  the uuid early inside `Neonize()`; the first callback from Go (a QR code or any event) is the proof.
  Calls without that proof raise `SessionNotConnected` instead of calling into Go.
- `stop()` never runs Go's `Stop` while another FFI call is in flight or while `Neonize()` is still
  creating the client: Go's client maps are unlocked, and a concurrent write aborts the process
  (`inflight.GoInFlight` tracks the calls and stops Go around them).
- `connect()` is one-shot (each call leaks a DB pool in Go). Whatever it ends with is an event; recovery
  is the session actor starting a fresh process.
- Every FFI call runs on the client's own bounded pool with a bound per kind (`gocalls.GoCalls`), never on
  the loop's default executor: a call that hangs in Go raises `ClientTimeout` and cannot starve the rest.
- Go callbacks only enqueue: neonize parses the protobuf on Go's thread and schedules our handler on the
  loop (`run_coroutine_threadsafe`), which appends it to a queue; `events()` converts (`events_in`).
- Media downloads make no Go call: `media_fetch` fetches and decrypts them as they arrive, to disk.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from actors.clients.neonize import (
    authstore,
    events_in,
    inbox,
    kinds,
    media_fetch,
    numbers,
    outgoing,
    proxy,
    refusals,
    runtime,
)
from actors.clients.neonize.groups import NeonizeGroups
from actors.clients.neonize.inflight import GoInFlight
from actors.clients.neonize.profiles import Profiles
from actors.clients.neonize.sender import NeonizeSender
from actors.ports import (
    ClientOptions,
    MediaBody,
    OutgoingMedia,
    PictureInfo,
    VoiceNote,
    WhatsAppClient,
)
from kernel.domain import (
    ContactCard,
    ContactInfo,
    Location,
    Message,
    NumberCheck,
    Poll,
    Reason,
    SendResult,
)
from kernel.errors import (
    AlreadyConnected,
    ClientError,
    InvalidPhone,
    InvalidRecipient,
    SessionNotConnected,
)
from kernel.events import (
    ClientEvent,
    Disconnected,
    LoggedOut,
    PairingCode,
)
from kernel.groups import GroupInfo, MemberChange, MemberOutcome
from kernel.ids import USER_SERVER, phone_digits, to_jid

log = logging.getLogger(__name__)

DEVICE_OS = "WhatsApp Bridge"  # the name the phone lists under Linked devices
PAIRING_READY_S = 30.0  # how long request_pairing_code waits for the socket (first QR) after connect()
_DEVICE_JID = re.compile(r"^(?P<user>[0-9]{5,20}):(?P<device>[0-9]{1,3})@(?P<server>s\.whatsapp\.net|lid)$")


class NeonizeClient(events_in.NeonizeEvents, inbox.NeonizeActions):
    """One WhatsApp account through neonize. Construct it in the session process, inside its event loop."""

    def __init__(self, options: ClientOptions, *, media: media_fetch.MediaFetcher | None = None) -> None:
        if not options.auth_dsn.startswith("postgres"):
            # Anything else would make whatsmeow create a SQLite file named after the string.
            raise ClientError("the neonize auth store must be a postgres:// DSN")
        device = _DEVICE_JID.match(options.device_jid) if options.device_jid else None
        if options.device_jid and device is None:
            raise ClientError(f"not a device JID: {options.device_jid!r}")
        self._sid = options.session_id
        self._dsn = options.auth_dsn
        self._proxy = options.proxy  # WhatsApp and media go through it (`proxy`)
        self._media = proxy.fetcher(media or media_fetch.MediaFetcher(), options.proxy)
        self._lib = lib = runtime.load()
        runtime.claim(device["user"] if device else options.session_id, self, options.session_id)
        try:
            self._native, self._go = runtime.build_native(
                lib, self._dsn, self._sid, device.groupdict() if device else None, DEVICE_OS
            )
        except BaseException:
            runtime.release(self)
            raise
        self._device_jid = options.device_jid
        self._own_jid = f"{device['user']}@{USER_SERVER}" if device else None
        self._queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self._inflight = GoInFlight(self._native, self._sid)
        self._connect_task: asyncio.Future[Any] | None = None
        self._connect_called = self._connect_started = False
        self._go_live = False  # Go has registered our uuid (proof: a callback came from inside Neonize())
        self._online = False
        self._qr_seen = asyncio.Event()
        self._dial_over = asyncio.Event()  # the dial failed or a terminal event came
        self._qr_count = 0
        self._stopped = False  # stop() began: nothing more is sent or asked of Go
        self._go_stopped = False  # Go's client has stopped (or the process must exit): no more callbacks
        self._profiles = Profiles(lib, self._native, self._call, self._go, self._sid, self._media)
        self._groups = NeonizeGroups(lib, self._native, self._call, self._sid)
        self._sender = NeonizeSender(lib, self._native, self._call, self._sid, lambda: self._own_jid)
        self._named: set[str] = set()  # chats whose address-book name or subject was looked up
        for name, kind in events_in.SUBSCRIPTIONS.items():
            self._native.event(getattr(lib.events, name))(self._handler(kind))
        self._native.event.qr(self._handler("qr"))
        try:
            runtime.bind_loop(lib, asyncio.get_running_loop())
        except RuntimeError:
            pass  # bound in connect()
        log.info("session %s: neonize client for %s", self._sid, options.device_jid or "a new device")

    @property
    def native(self) -> Any:
        """The wrapped neonize client. Calling into it directly bypasses every guard above."""
        return self._native

    # ------------------------------------------------------------------ the port

    async def connect(self) -> None:
        """Start the dial; the outcome (QR codes, Connected, Disconnected or LoggedOut) arrives as events."""
        if self._stopped:
            raise ClientError("this client was stopped; a new session process makes a new one")
        if self._connect_called:
            raise AlreadyConnected("connect() was already called on this client")
        self._connect_called = True
        runtime.bind_loop(self._lib, asyncio.get_running_loop())
        if self._device_jid is not None:
            try:
                exists = await authstore.device_exists(self._dsn, self._device_jid)
            except Exception:
                log.warning("session %s: could not look up the device row", self._sid, exc_info=True)
                self._emit(Disconnected(Reason.ERROR, retrying=False))
                return
            if not exists:
                log.info(
                    "session %s: device %s is gone from the auth store: logged out",
                    self._sid,
                    self._device_jid,
                )
                self._emit(LoggedOut(Reason.LOGGED_OUT))
                return
        runtime.go_log_level(self._lib)
        self._connect_started = True
        try:
            task = await self._native.connect(proxy.settings(self._lib, self._proxy))
        except Exception as err:
            self._on_connect_error(err)
            return
        self._connect_task = task
        task.add_done_callback(self._connect_done)
        log.info("session %s: connect started", self._sid)

    async def events(self) -> AsyncIterator[ClientEvent]:
        """The client's events in order, including what Go handed over during `stop()`; ends after it."""
        while True:
            if self._go_stopped and self._queue.empty():
                return
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)  # every later reader ends too
                return
            kind, payload = item
            try:
                converted = await self._convert(kind, payload)
            except Exception:
                log.exception("session %s: dropped a %s event that could not be converted", self._sid, kind)
                continue
            for event in converted:
                yield event

    async def request_pairing_code(self, phone: str) -> str:
        """An 8-character code for `phone` (digits, no dash), once the socket is up; also emitted."""
        try:
            digits = phone_digits(phone)
        except InvalidRecipient as err:
            raise InvalidPhone(f"{phone!r} is not a phone number") from err
        if self._online or self._device_jid is not None:
            raise AlreadyConnected("this client is already paired")
        if not self._connect_started or self._stopped:
            raise SessionNotConnected("no pairing round is running")
        if not self._qr_seen.is_set():
            waiters = {
                asyncio.ensure_future(self._qr_seen.wait()),
                asyncio.ensure_future(self._dial_over.wait()),
            }
            _, pending = await asyncio.wait(
                waiters, timeout=PAIRING_READY_S, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
        if not self._qr_seen.is_set() or self._dial_over.is_set():
            raise SessionNotConnected("the connection to WhatsApp is not up")
        enums = self._lib.enums
        try:
            code = await self._call(
                self._native.PairPhone,
                digits,
                True,
                client_name=enums.ClientName.LINUX,
                client_type=enums.ClientType.CHROME,
            )
        except self._lib.exc.PairPhoneError as err:
            if "phone number" in str(err).lower():
                raise InvalidPhone(str(err)) from err
            raise ClientError(f"pairing code refused: {err}") from err
        code = str(code).replace("-", "")
        self._emit(PairingCode(code, f"+{digits}"))
        log.info("session %s: pairing code issued for +%s", self._sid, digits)
        return code

    async def send_text(self, to: str, text: str, *, quoted: Message | None = None) -> SendResult:
        return await self._sender.text(self._recipient(to), text, quoted)

    async def send_media(self, to: str, media: OutgoingMedia, *, quoted: Message | None = None) -> SendResult:
        return await self._sender.media(self._recipient(to), media, quoted)

    async def send_voice_note(self, to: str, note: VoiceNote, *, quoted: Message | None = None) -> SendResult:
        return await self._sender.voice_note(self._recipient(to), note, quoted)

    async def send_location(self, to: str, location: Location) -> SendResult:
        return await self._sender.content(self._recipient(to), location)

    async def send_contact(self, to: str, card: ContactCard) -> SendResult:
        return await self._sender.content(self._recipient(to), card)

    async def send_poll(self, to: str, poll: Poll) -> SendResult:
        return await self._sender.content(self._recipient(to), poll)

    async def check_numbers(self, phones: Sequence[str]) -> list[NumberCheck]:
        asked = numbers.digits_of(phones)
        self._require_online()
        try:
            responses = await self._call(self._native.is_on_whatsapp, *(f"+{d}" for d in asked))
        except self._lib.exc.NeonizeError as err:
            raise refusals.refusal(str(err)) or ClientError(f"number check failed: {err}") from err
        return numbers.checks(asked, responses)

    async def contact_info(self, jid: str) -> ContactInfo:
        self._require_online()
        return await self._profiles.contact_info(to_jid(jid))

    async def set_blocked(self, jid: str, blocked: bool) -> None:
        self._require_online()
        await self._profiles.set_blocked(to_jid(jid), blocked)

    async def groups(self) -> list[GroupInfo]:
        self._require_online()
        return await self._groups.groups()

    async def group_info(self, jid: str) -> GroupInfo:
        self._require_online()
        return await self._groups.group_info(jid)

    async def create_group(self, subject: str, participants: Sequence[str]) -> GroupInfo:
        self._require_online()
        return await self._groups.create_group(subject, participants)

    async def change_members(
        self, jid: str, participants: Sequence[str], change: MemberChange
    ) -> list[MemberOutcome]:
        self._require_online()
        return await self._groups.change_members(jid, participants, change)

    async def group_invite_link(self, jid: str, reset: bool = False) -> str:
        self._require_online()
        return await self._groups.group_invite_link(jid, reset)

    async def reject_call(self, caller: str, call_id: str) -> None:
        self._require_online()
        await self._sender.reject_call(caller, call_id)

    async def download_media(self, message: Message, max_bytes: int) -> MediaBody:
        """The decrypted media of a message this adapter produced (its `media_ref`), streamed to a temporary
        file and verified before it is handed out (`media_fetch`). Refused above `max_bytes` before any
        request when the message declares its size, and as soon as the bytes say so otherwise.
        """
        media = kinds.stored_media(self._lib, message.media_ref, max_bytes)
        # No Go call follows, so Go's liveness (`_require_online`) is not needed: only the connection.
        if self._stopped or not self._online:
            raise SessionNotConnected()
        return await self._media.fetch(media, max_bytes, label=self._sid)

    async def mark_read(self, chat_id: str, messages: Sequence[Message]) -> None:
        self._require_online()
        await self._sender.mark_read(chat_id, messages)

    # send_reaction, edit_message, revoke_message, send_chat_presence: `inbox.NeonizeActions`.

    async def profile_picture(self, jid: str, known_id: str | None) -> PictureInfo | None:
        self._require_online()
        return await self._profiles.picture(jid, known_id)

    async def download_picture(self, picture: PictureInfo, max_bytes: int) -> bytes:
        if self._stopped or not self._online:
            raise SessionNotConnected()
        return await self._profiles.download(picture, max_bytes)

    async def logout(self) -> None:
        """Unlink the device (whatsmeow deletes its row); offline, delete the row ourselves. No event."""
        if self._stopped:
            raise ClientError("this client was stopped")
        if self._go_live and self._device_jid is not None:
            try:
                await self._call(self._native.logout)
                self._online = False
                log.info("session %s: logged out; whatsmeow deleted device %s", self._sid, self._device_jid)
                return
            except Exception:
                log.warning(
                    "session %s: unlink failed; deleting the credentials only", self._sid, exc_info=True
                )
        if self._device_jid is None:
            log.info("session %s: logout with no device: nothing to delete", self._sid)
            return
        await authstore.delete_device(self._dsn, self._device_jid)
        self._online = False
        log.warning(
            "session %s: device %s deleted locally; the phone may still list it", self._sid, self._device_jid
        )

    async def stop(self) -> None:
        """Stop Go's client (bounded: it blocks on a black-holed network), end `events()`. Idempotent.

        What Go hands over until its client has stopped still comes out of `events()` (whatsmeow has
        acknowledged it to WhatsApp); nothing does once `stop()` returns: the session is going away.
        """
        if self._stopped:
            return
        self._stopped, self._online = True, False
        runtime.release(self)
        try:
            await self._inflight.stop_go(self._connect_task, self._connect_started, lambda: self._go_live)
        finally:
            self._go_stopped = True
            self._queue.put_nowait(None)

    # Go → us (callbacks, conversion): `events_in.NeonizeEvents`.

    # ------------------------------------------------------------------ us → Go

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """One FFI call, tracked until its thread returns even if the caller gives up (stop() waits)."""
        if self._stopped or not self._go_live:
            raise SessionNotConnected()
        return await self._inflight.call(fn, *args, **kwargs)

    def _require_online(self) -> None:
        if self._stopped or not self._go_live or not self._online:
            raise SessionNotConnected()

    def _recipient(self, to: str) -> Any:
        self._require_online()
        return outgoing.jid_proto(self._lib, to)

    async def _send(self, jid: Any, message: Any, what: str) -> SendResult:
        return await self._sender.send(jid, message, what)


_: type[WhatsAppClient] = NeonizeClient
