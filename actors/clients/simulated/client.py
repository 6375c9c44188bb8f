"""`SimulatedClient`: the WhatsAppClient of the simulated network, behaving like whatsmeow does.

State transitions (one client per process, never reused after `stop`):
- `connect()` without a device → a QR round (`qr_codes` codes, first valid `qr_first_s`, then `qr_next_s`
  each), then silence: no event, like neonize spinning in FetchMe. `scan()` during the round pairs:
  `Paired`, `Connected`, then the pairing-time history sync.
- `connect()` with a device → `Connected` if its `wa_sim.device` row exists, else `LoggedOut`.
- `drop()` → `Disconnected(network, retrying)` then `Connected` after a short delay (never, with
  `hang_reconnect`); messages and receipts that arrive meanwhile are delivered after the reconnect.
- `unlink()` → `LoggedOut`; `logout()` deletes the device silently; both leave the client done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta

from actors.calls import NetworkControls
from actors.clients.simulated.actions import SimulatedActions
from actors.clients.simulated.content import (
    HistoryPlan,
    make_history,
    media_chunks,
    media_size,
    now,
    pairing_code,
    qr_keys,
    qr_payload,
)
from actors.clients.simulated.groups import SimulatedGroups
from actors.clients.simulated.kinds import Contacts, not_on_whatsapp
from actors.clients.simulated.phone import PAIRED, Phase, SimulatedPhone, digits_of
from actors.clients.simulated.proxy import check_proxy
from actors.clients.simulated.sends import SimulatedSends
from actors.ports import (
    ClientOptions,
    MediaBody,
    OutgoingMedia,
    PictureInfo,
    SimNetworkPort,
    VoiceNote,
    WhatsAppClient,
)
from actors.tasks import TaskGroup
from kernel.domain import (
    ContactCard,
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
    InvalidInput,
    MediaNotAvailable,
    MediaTooLarge,
    SessionNotConnected,
)
from kernel.events import (
    ClientEvent,
    Connected,
    Disconnected,
    GroupChanged,
    HistoryChunk,
    LoggedOut,
    PairingCode,
    QrCode,
)
from kernel.groups import GroupAct, GroupInfo, MemberChange, MemberOutcome
from kernel.ids import USER_SERVER, jid_user, to_jid
from kernel.inbox_scope import ChatKind, chat_kind
from kernel.proxy import ProxySettings

log = logging.getLogger(__name__)

CONNECT_DELAY_S = 0.03  # a resumed device logs in this long after connect()
RECONNECT_DELAY_S = 0.3  # whatsmeow waits 2 s × errors; scaled down
HISTORY_STEP_S = 0.05  # between the pairing and each history chunk


class SimulatedClient(SimulatedPhone, SimulatedActions):
    """A whatsmeow look-alike. Besides the port, its control methods are what /simulator routes drive."""

    def __init__(
        self, options: ClientOptions, store: SimNetworkPort, *, pairing_history: HistoryPlan | None = None
    ) -> None:
        self._opts = options
        self._sid = options.session_id
        self._store = store
        self._history_plan = pairing_history or HistoryPlan()
        self._tasks = TaskGroup(f"session {options.session_id} (simulated)")
        self._queue: asyncio.Queue[ClientEvent | None] = asyncio.Queue()
        self._online = asyncio.Event()
        self._phase = Phase.NEW
        self._round: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._qr: str | None = None
        self._code: tuple[str, str] | None = None  # (pairing code, phone digits it was issued for)
        self._device_jid = options.device_jid
        self._push_name: str | None = None
        self.contacts = Contacts()
        self.network_groups = SimulatedGroups(self._emit, self._require_connected, self._own_jid, self._sid)
        self.sends = SimulatedSends(
            store, self._tasks, self.contacts, self._online, self._emit, self._require_connected, self._sid
        )
        self._proxy_checked = False

    async def _through_proxy(self, proxy: ProxySettings) -> None:
        reason = await check_proxy(proxy)
        if reason is not None:
            log.warning("session %s: the proxy refused the dial: %s", self._sid, reason)
            self._emit(Disconnected(reason, retrying=False))
        elif self._phase is Phase.NEW:
            await self.connect()

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def session_id(self) -> str:
        return self._sid

    # ------------------------------------------------------------------ the port

    async def connect(self) -> None:
        """Start the dial; the outcome (QR codes, Connected or LoggedOut) arrives as events."""
        if self._phase is Phase.STOPPED:
            raise ClientError("this client was stopped; a new session process makes a new one")
        if self._phase is not Phase.NEW:
            raise AlreadyConnected("connect() was already called on this client")
        if self._opts.proxy is not None and not self._proxy_checked:
            self._proxy_checked = True  # the dial goes on once the proxy let it through (proxy.py)
            self._tasks.spawn(self._through_proxy(self._opts.proxy), "proxy dial")
            return
        if self._device_jid is None:
            self._phase = Phase.PAIRING
            self._round = self._tasks.spawn(self._qr_round(), "QR round")
        else:
            self._phase = Phase.RESUMING
            self._tasks.spawn(self._resume(self._device_jid), "resume")

    async def events(self) -> AsyncIterator[ClientEvent]:
        """The events in order; ends after `stop()`."""
        while not (self._phase is Phase.STOPPED and self._queue.empty()):
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def request_pairing_code(self, phone: str) -> str:
        """An 8-character code for `phone`, valid while the QR round runs; also emitted as `PairingCode`."""
        digits = digits_of(phone)
        if self._phase in (*PAIRED, Phase.LINKING, Phase.RESUMING):
            raise AlreadyConnected("this client is already paired")
        if self._phase is not Phase.PAIRING:
            raise SessionNotConnected(f"no pairing round is running (client {self.phase})")
        code = pairing_code()
        self._code = (code, digits)
        self._emit(PairingCode(code, f"+{digits}"))
        log.info("session %s: pairing code issued for +%s", self._sid, digits)
        return code

    async def send_text(self, to: str, text: str, *, quoted: Message | None = None) -> SendResult:
        return await self.sends.text(to, text, quoted)

    async def send_media(self, to: str, media: OutgoingMedia, *, quoted: Message | None = None) -> SendResult:
        return await self.sends.media(to, media, quoted)

    async def send_voice_note(self, to: str, note: VoiceNote, *, quoted: Message | None = None) -> SendResult:
        return await self.sends.voice_note(to, note, quoted)

    async def send_location(self, to: str, location: Location) -> SendResult:
        return await self.sends.content(to, location)

    async def send_contact(self, to: str, card: ContactCard) -> SendResult:
        return await self.sends.content(to, card)

    async def send_poll(self, to: str, poll: Poll) -> SendResult:
        return await self.sends.content(to, poll)

    async def check_numbers(self, phones: Sequence[str]) -> list[NumberCheck]:
        self._require_connected()
        checks = []
        for phone in phones:
            jid = to_jid(f"+{digits_of(phone)}")
            on = not not_on_whatsapp(jid)
            checks.append(NumberCheck(f"+{jid_user(jid)}", on, jid if on else None))
        return checks

    async def groups(self) -> list[GroupInfo]:
        return await self.network_groups.groups()

    async def group_info(self, jid: str) -> GroupInfo:
        return await self.network_groups.group_info(jid)

    async def create_group(self, subject: str, participants: Sequence[str]) -> GroupInfo:
        return await self.network_groups.create_group(subject, participants)

    async def change_members(
        self, jid: str, participants: Sequence[str], change: MemberChange
    ) -> list[MemberOutcome]:
        return await self.network_groups.change_members(jid, participants, change)

    async def group_invite_link(self, jid: str, reset: bool = False) -> str:
        return await self.network_groups.group_invite_link(jid, reset)

    async def group_event(self, act: GroupAct) -> GroupChanged:
        """Another member acts in a group (the /simulator control; `SimulatedGroups.group_event`)."""
        return await self.network_groups.group_event(act)

    async def download_media(self, message: Message, max_bytes: int) -> MediaBody:
        """The media `message.media_ref` describes, made chunk by chunk as it is read (never whole); for
        what this session sent, the bytes the network received."""
        ref = message.media_ref
        if ref and ref.get("sim") == "sent":
            if int(ref.get("size", 0)) > max_bytes:
                raise MediaTooLarge(limit=max_bytes)
            data = await self._store.sent_data(str(ref.get("id")))
            if data is None:
                raise MediaNotAvailable()
            return MediaBody(len(data), _chunks(iter([data])))
        size = media_size(message.media_ref)
        if size > max_bytes:
            raise MediaTooLarge(limit=max_bytes)
        return MediaBody(size, _chunks(media_chunks(message.media_ref)))

    async def mark_read(self, chat_id: str, messages: Sequence[Message]) -> None:
        self._require_connected()
        chat = to_jid(chat_id)
        if any(m.chat_id != chat for m in messages):
            raise InvalidInput(f"every message marked read must belong to {chat}")
        log.debug("session %s: %d messages in %s marked read", self._sid, len(messages), chat)

    # send_reaction, edit_message, revoke_message, send_chat_presence: `SimulatedActions`.

    async def profile_picture(self, jid: str, known_id: str | None) -> PictureInfo | None:
        self._require_connected()
        if jid == self._own_jid():
            jid = "me"
        return self.contacts.picture(jid, known_id)

    async def download_picture(self, picture: PictureInfo, max_bytes: int) -> bytes:
        self._require_connected()
        return self.contacts.download(picture, max_bytes)

    async def logout(self) -> None:
        """Unlink this device and forget what it sent. No event: whatsmeow's own Logout dispatches none."""
        if self._phase is Phase.STOPPED:
            raise ClientError("this client was stopped")
        await self._store.forget()
        self._done(Phase.LOGGED_OUT)
        log.info("session %s: logged out; device %s deleted", self._sid, self._device_jid)

    async def stop(self) -> None:
        """Cancel every background task, end `events()`, close the connection. Idempotent."""
        if self._phase is Phase.STOPPED:
            return
        self._phase = Phase.STOPPED
        self._online.clear()
        await self._tasks.cancel_all()
        self._queue.put_nowait(None)
        await self._store.close()
        log.info("session %s: simulated client stopped", self._sid)

    # scan, incoming, contact, history, drop, unlink, sent (the /simulator controls): `SimulatedPhone`.

    # ------------------------------------------------------------------ internals

    def _emit(self, event: ClientEvent) -> None:
        if self._phase is not Phase.STOPPED:
            self._queue.put_nowait(event)

    def _go_online(self) -> None:
        self._phase = Phase.CONNECTED
        self._emit(Connected(push_name=self._push_name))
        self._online.set()

    def _done(self, phase: Phase) -> None:
        self._cancel_round()
        if self._reconnect is not None:
            self._reconnect.cancel()
        self._online.clear()
        self._qr = self._code = None
        self._phase = phase

    def _cancel_round(self) -> None:
        if self._round is not None:
            self._round.cancel()
            self._round = None
        self._qr = self._code = None

    def _require_connected(self) -> None:
        if self._phase is not Phase.CONNECTED:
            raise SessionNotConnected()

    def _recipient(self, to: str) -> str:
        return self.sends.recipient(to)

    def _route(self, message: Message) -> Message | None:
        """Where WhatsApp's traffic for this chat goes, as the neonize adapter routes it: dropped for
        status, newsletters, Meta AI and system chats; a broadcast list's to its sender's chat; a
        contact known by a LID addressed by it (with the phone alternative once revealed)."""
        kind = chat_kind(message.chat_id)
        if kind is ChatKind.BROADCAST_LIST:
            message = replace(message, chat_id=message.sender)
            kind = chat_kind(message.sender)
        if kind not in (ChatKind.DIRECT, ChatKind.GROUP):
            return None
        contact = self.contacts.get(message.chat_id) if kind is ChatKind.DIRECT else None
        if contact is not None and contact.lid and not contact.lid_revealed:
            return replace(message, chat_id=contact.lid, sender=contact.lid)
        if contact is not None and contact.lid:
            return replace(message, sender_alt=contact.lid)
        return message

    def _own_jid(self) -> str:
        return f"{jid_user(self._device_jid or '')}@{USER_SERVER}"

    async def _when_online(self, event: ClientEvent) -> None:
        await self._online.wait()
        self._emit(event)

    async def _qr_round(self) -> None:
        keys = qr_keys()
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        for i in range(self._opts.qr_codes):
            deadline += self._opts.qr_first_s if i == 0 else self._opts.qr_next_s
            self._qr = qr_payload(keys)
            self._emit(QrCode(self._qr, now() + timedelta(seconds=deadline - loop.time())))
            log.debug("session %s: QR code %d of %d", self._sid, i + 1, self._opts.qr_codes)
            await asyncio.sleep(max(0.0, deadline - loop.time()))
        self._qr = self._code = None
        self._round = None
        self._phase = Phase.SILENT
        log.info("session %s: QR round ended unscanned; the network stays silent", self._sid)

    async def _resume(self, jid: str) -> None:
        await asyncio.sleep(CONNECT_DELAY_S)
        try:
            device = await self._store.device(jid)
        except ClientError:
            log.warning("session %s: could not look up device %s", self._sid, jid, exc_info=True)
            self._phase = Phase.FAILED
            self._emit(Disconnected(Reason.ERROR, retrying=False))
            return
        if device is None:
            log.info("session %s: device %s is gone: logged out", self._sid, jid)
            self._done(Phase.LOGGED_OUT)
            self._emit(LoggedOut(Reason.LOGGED_OUT))
            return
        self._push_name = device.push_name
        log.info("session %s: resumed %s", self._sid, jid)
        self._go_online()

    async def _reconnect_later(self) -> None:
        await asyncio.sleep(RECONNECT_DELAY_S)
        self._reconnect = None
        if self._phase is Phase.RECONNECTING:
            log.info("session %s: reconnected", self._sid)
            self._go_online()

    async def _pairing_history(self) -> None:
        plan = self._history_plan
        conversations = make_history(self._own_jid(), plan.chats, plan.messages_per_chat)
        size = -(-len(conversations) // max(1, plan.chunks))
        for start in range(0, len(conversations), max(1, size)):
            await asyncio.sleep(HISTORY_STEP_S)
            await self._online.wait()
            self._emit(HistoryChunk(conversations[start : start + size]))


async def _chunks(chunks: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)  # a chunk costs ~1 ms to make: let the session's other work in between


_: type[WhatsAppClient] = SimulatedClient
_controls: type[NetworkControls] = SimulatedClient
