"""Go → us: neonize's callbacks and their conversion to domain events; mixed into `NeonizeClient`.

Go callbacks only enqueue (`_handler` → `_accept`, on the loop, cheap: neonize parses the protobuf on Go's
thread and schedules the handler with `run_coroutine_threadsafe`); `events()` converts each queued item
(`_convert`) in order. The state the callbacks keep (Go live, online, QR seen, dial over) is the client's,
read by its guards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors.clients.neonize import convert, groups, inbox, outgoing, polls, proxy
from actors.clients.neonize.convert import enum_name
from actors.clients.neonize.inflight import retrieve
from actors.clients.neonize.profiles import Profiles
from actors.clients.neonize.runtime import Lib
from kernel.domain import Reason
from kernel.errors import ClientTimeout, SessionNotConnected, WaError
from kernel.events import (
    ClientEvent,
    Connected,
    ContactName,
    Disconnected,
    LoggedOut,
    MessageReceived,
    Paired,
    PictureChanged,
    QrCode,
)
from kernel.ids import is_group
from kernel.proxy import ProxySettings

log = logging.getLogger("actors.clients.neonize.client")  # the client's log, as before the split


QR_FIRST_S, QR_NEXT_S = 60.0, 20.0
# neonize event class name (in neonize.events) → our kind.
SUBSCRIPTIONS = {
    "PairStatusEv": "pair",
    "ConnectedEv": "connected",
    "DisconnectedEv": "disconnected",
    "LoggedOutEv": "logged_out",
    "StreamReplacedEv": "replaced",
    "TemporaryBanEv": "banned",
    "ConnectFailureEv": "connect_failure",
    "ClientOutdatedEv": "outdated",
    "StreamErrorEv": "stream_error",
    "KeepAliveTimeoutEv": "keepalive_timeout",
    "KeepAliveRestoredEv": "keepalive_restored",
    "MessageEv": "message",
    "ReceiptEv": "receipt",
    "HistorySyncEv": "history",
    "ChatPresenceEv": "chat_presence",
    "PresenceEv": "presence",
    "PictureEv": "picture",
    "CallOfferEv": "call_offer",
    "GroupInfoEv": "group_info",
    "JoinedGroupEv": "joined_group",
}
_OFFLINE_KINDS = frozenset(
    {"disconnected", "logged_out", "replaced", "banned", "connect_failure", "outdated"}
)
# Events that map to one fixed domain event, with what the log says about them.
_FIXED = {
    # whatsmeow reconnects by itself after a drop (not after a failed first dial).
    "disconnected": (Disconnected(Reason.NETWORK, retrying=True), "connection lost; whatsmeow reconnects"),
    "replaced": (Disconnected(Reason.REPLACED, retrying=False), "stream replaced by another client"),
    # whatsmeow keeps the device keys on a temporary ban (no Store.Delete): not a logout.
    "banned": (Disconnected(Reason.BANNED, retrying=False), "temporarily banned"),
    "outdated": (Disconnected(Reason.OUTDATED, retrying=False), "WhatsApp refused this client version"),
}


class NeonizeEvents:
    """Go's callbacks and the conversion of what they queued; mixed into `NeonizeClient`."""

    _sid: str
    _lib: Lib
    _native: Any
    _device_jid: str | None
    _own_jid: str | None
    _queue: asyncio.Queue[tuple[str, Any] | None]
    _connect_started: bool
    _go_live: bool
    _online: bool
    _qr_seen: asyncio.Event
    _dial_over: asyncio.Event
    _qr_count: int
    _stopped: bool
    _go_stopped: bool
    _profiles: Profiles
    _named: set[str]
    _proxy: ProxySettings | None

    if TYPE_CHECKING:

        async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any: ...

    def _handler(self, kind: str) -> Callable[[Any, Any], Awaitable[None]]:
        async def handle(_client: Any, payload: Any) -> None:
            self._accept(kind, payload)

        return handle

    def _accept(self, kind: str, payload: Any) -> None:
        if self._go_stopped:
            return
        if self._connect_started:
            self._go_live = True
        if kind == "qr":
            self._qr_seen.set()
        elif kind == "connected":
            self._online = True
        elif kind in _OFFLINE_KINDS:
            self._online = False
            if kind != "disconnected":
                self._dial_over.set()
        self._queue.put_nowait((kind, payload))

    def _connect_done(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            self._on_connect_error(err)
        elif not self._stopped:
            log.warning("session %s: Go's client loop ended by itself", self._sid)

    def _on_connect_error(self, err: BaseException) -> None:
        if self._stopped:
            return
        self._online = False
        self._dial_over.set()
        reason = proxy.dial_reason(err, self._proxy) or convert.connect_error_reason(err)
        log.warning("session %s: connect failed (%s): %s", self._sid, reason, err)
        self._emit(Disconnected(reason, retrying=False))

    def _emit(self, event: ClientEvent) -> None:
        if not self._stopped:
            self._queue.put_nowait(("event", event))

    # ------------------------------------------------------------------ conversion (in events())

    async def _convert(self, kind: str, payload: Any) -> list[ClientEvent]:
        if kind == "event":
            return [payload]
        if kind in _FIXED:
            event, text = _FIXED[kind]
            if kind == "banned":
                log.warning(
                    "session %s: %s (%s, %d s)", self._sid, text, enum_name(payload, "Code"), payload.Expire
                )
                if payload.Expire > 0:  # whatsmeow's TemporaryBan.Expire, in seconds here
                    event = Disconnected(Reason.BANNED, retrying=False, retry_after_s=float(payload.Expire))
            else:
                log.warning("session %s: %s", self._sid, text)
            return [event]
        match kind:
            case "qr":
                return [self._qr(payload)]
            case "pair":
                return self._paired(payload)
            case "connected":
                return [await self._connected()]
            case "logged_out":
                self._device_jid = None  # whatsmeow deleted the device row
                reason = convert.logged_out_reason(enum_name(payload, "Reason"))
                log.warning("session %s: logged out by WhatsApp (%s)", self._sid, reason)
                return [LoggedOut(reason)]
            case "connect_failure":
                name = enum_name(payload, "Reason")
                log.warning("session %s: connect failure %s: %s", self._sid, name, payload.Message)
                return [Disconnected(convert.connect_failure_reason(name), retrying=False)]
            case "message":
                links: list[ClientEvent] = list(convert.identity_links(payload.Info.MessageSource))
                if (update := polls.poll_update(payload)) is not None:
                    vote = await self._decrypt_vote(payload, update)
                    return [*links, vote] if vote else links
                action = inbox.message_action(payload, self._own_jid)
                if action is not None:
                    return [*links, action]
                got = convert.message_from_event(payload, self._own_jid)
                if got:
                    self._look_up_name(got[0].chat_id)
                return [*links, MessageReceived(*got)] if got else links
            case "receipt":
                read = inbox.own_read(payload)
                if read is not None:
                    return [read]
                receipt = convert.receipt_from_event(payload)
                revealed: list[ClientEvent] = list(convert.identity_links(payload.MessageSource))
                return [*revealed, receipt] if receipt else revealed
            case "chat_presence":
                typing = inbox.chat_presence(payload)
                return [typing] if typing else []
            case "presence":
                online = inbox.presence(payload)
                return [online] if online else []
            case "history":
                # Chunks hold thousands of messages: convert them off the event loop.
                chunk = await asyncio.to_thread(convert.history_chunk, payload, self._own_jid)
                known: list[ClientEvent] = list(convert.history_links(payload))
                if chunk is None:
                    return known
                return [*known, chunk, *convert.history_names(chunk, payload)]
            case "picture":
                jid = convert.jid_str(payload.JID)
                return [PictureChanged(jid)] if jid else []
            case "group_info":
                changed = groups.group_changed(payload)
                return [changed] if changed else []
            case "joined_group":
                joined = groups.joined_group(payload, self._own_jid)
                return [joined] if joined else []
            case "call_offer":
                offered = convert.call_offer(payload)
                return [offered] if offered else []
        log.info("session %s: %s %s", self._sid, kind, str(payload).replace("\n", " ")[:200])
        return []

    async def _decrypt_vote(self, ev: Any, update: Any) -> ClientEvent | None:
        try:
            decrypted = await self._call(self._native.decrypt_poll_vote, ev)
        except (WaError, self._lib.exc.NeonizeError) as err:
            log.info("session %s: a poll vote could not be read: %s", self._sid, err)
            return None
        return polls.vote_from(ev, update, decrypted, self._own_jid)

    def _look_up_name(self, chat_id: str) -> None:
        """Once per chat and process: the address-book name of a contact, the subject of a group, emitted
        as `ContactName` when whatsmeow knows it (in the background; nothing when Go is not up)."""
        if chat_id in self._named or self._stopped or not self._go_live:
            return
        self._named.add(chat_id)

        async def look_up() -> None:
            try:
                if is_group(chat_id):
                    name, source = await self._profiles.group_subject(chat_id), "subject"
                else:
                    name, source = await self._profiles.contact_name(chat_id), "contact"
            except Exception as err:
                log.info("session %s: no name for %s: %r", self._sid, chat_id, err)
                return
            if name:
                self._emit(ContactName(chat_id, name, source))

        future = asyncio.ensure_future(look_up())
        future.add_done_callback(retrieve)

    def _qr(self, payload: bytes) -> QrCode:
        ttl = QR_FIRST_S if self._qr_count == 0 else QR_NEXT_S
        self._qr_count += 1
        return QrCode(payload.decode(), datetime.now(UTC) + timedelta(seconds=ttl))

    def _paired(self, ev: Any) -> list[ClientEvent]:
        if enum_name(ev, "Status") != "SUCCESS":
            log.warning("session %s: pairing failed: %s", self._sid, ev.Error)
            return [Disconnected(Reason.ERROR, retrying=False)]
        self._device_jid = convert.device_jid_str(ev.ID)
        self._own_jid = f"{ev.ID.User}@{ev.ID.Server}"
        log.info("session %s: paired as %s", self._sid, self._device_jid)
        return [Paired(self._device_jid, f"+{ev.ID.User}", None)]

    async def _connected(self) -> Connected:
        """Connected, with our push name and profile picture when Go can tell (guarded, bounded)."""
        log.info("session %s: connected", self._sid)
        if not self._go_live or self._stopped:
            return Connected()
        push_name = picture = None
        try:
            me = await self._call(self._native.get_me)
            push_name = str(me.PushName) or None
            if me.HasField("JID") and me.JID.User:
                self._own_jid = f"{me.JID.User}@{me.JID.Server}"
            if self._own_jid:
                params = self._lib.proto.GetProfilePictureParams(Preview=False)
                own = outgoing.jid_proto(self._lib, self._own_jid)
                info = await self._call(self._native.get_profile_picture, own, params)
                picture = str(info.URL) or None
        except (ClientTimeout, SessionNotConnected, self._lib.exc.NeonizeError) as err:
            log.info("session %s: profile not available: %r", self._sid, err)
        return Connected(push_name, picture)
