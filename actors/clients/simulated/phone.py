"""The phone's side of the simulated network: what /simulator routes drive; mixed into `SimulatedClient`.

The phone scans the QR (or enters the pairing code), a contact writes, the phone's address book changes,
history arrives, the network drops, the phone unlinks the device; `sent` lists what the network received.
Each becomes the events whatsmeow would give, through the client's queue and state. The phone's
reactions, edits, revokes, reads and presence are `actions.SimulatedActions`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from actors.clients.simulated.content import group_participant, incoming_media, make_history, message_id, now
from actors.clients.simulated.kinds import Contacts, chat_of, typed_content
from actors.ports import SimNetworkPort
from actors.tasks import TaskGroup
from kernel.domain import Message, Reason
from kernel.errors import InvalidInput, InvalidPhone, InvalidRecipient, NoQrShowing, SessionNotConnected
from kernel.events import (
    ClientEvent,
    ContactName,
    Disconnected,
    HistoryChunk,
    IdentityLink,
    LoggedOut,
    MessageReceived,
    Paired,
    PictureChanged,
)
from kernel.ids import is_group, phone_digits, to_jid
from kernel.simulated import SentMessage

log = logging.getLogger("actors.clients.simulated.client")  # the client's log, as before the split

MAX_HISTORY_CHATS = 100
MAX_HISTORY_MESSAGES = 500


class Phase(StrEnum):
    NEW = "new"
    PAIRING = "pairing"  # a QR round is running
    SILENT = "silent"  # the QR round ended unscanned
    LINKING = "linking"  # scanned; the device row is being written
    RESUMING = "resuming"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    LOGGED_OUT = "logged_out"
    FAILED = "failed"
    STOPPED = "stopped"


PAIRED = (Phase.CONNECTED, Phase.RECONNECTING)


class SimulatedPhone:
    """The /simulator controls; mixed into `SimulatedClient` (which provides what is declared here)."""

    _sid: str
    _store: SimNetworkPort
    _tasks: TaskGroup
    _online: asyncio.Event
    _phase: Phase
    _qr: str | None
    _code: tuple[str, str] | None
    _device_jid: str | None
    _push_name: str | None
    _reconnect: asyncio.Task[None] | None
    contacts: Contacts

    if TYPE_CHECKING:

        def _emit(self, event: ClientEvent) -> None: ...
        def _go_online(self) -> None: ...
        def _done(self, phase: Phase) -> None: ...
        def _cancel_round(self) -> None: ...
        def _require_connected(self) -> None: ...
        def _route(self, message: Message) -> Message | None: ...
        def _own_jid(self) -> str: ...
        def _when_online(self, event: ClientEvent) -> Coroutine[Any, Any, None]: ...
        def _pairing_history(self) -> Coroutine[Any, Any, None]: ...
        def _reconnect_later(self) -> Coroutine[Any, Any, None]: ...

    async def scan(self, phone: str, display_name: str | None = None) -> str:
        """The phone scans the QR or enters the pairing code: pair, connect, sync history; the device JID."""
        digits = digits_of(phone)
        if self._phase is not Phase.PAIRING or (self._qr is None and self._code is None):
            raise NoQrShowing()
        if self._code is not None and self._code[1] != digits:
            raise InvalidPhone(f"the pairing code was issued for +{self._code[1]}, not +{digits}")
        self._cancel_round()
        self._phase = Phase.LINKING
        try:
            jid = await self._store.add_device(digits, display_name)
        except BaseException:
            if self._phase is Phase.LINKING:
                self._phase = Phase.SILENT  # the round is gone: like a failed pairing, only a restart helps
            raise
        if self._phase is not Phase.LINKING:  # stopped meanwhile
            return jid
        self._device_jid, self._push_name = jid, display_name
        log.info("session %s: +%s scanned; paired as %s", self._sid, digits, jid)
        self._emit(Paired(jid, f"+{digits}", display_name))
        self._go_online()
        self._tasks.spawn(self._pairing_history(), "history sync")
        return jid

    async def incoming(
        self,
        from_: str,
        text: str | None = None,
        push_name: str | None = None,
        media: Mapping[str, Any] | None = None,
        **kind: Any,
    ) -> Message:
        """A message from `from_` (phone, user or group JID, or an address the inbox drops); delivered
        now, or after the reconnect. `kind`: location, contacts, poll, view_once, quoted_id, sender (a
        group member or a broadcast list's sender), subject (a group's)."""
        if self._phase not in PAIRED:
            raise SessionNotConnected()
        chat = chat_of(from_)
        typed = any(kind.get(k) for k in ("location", "contacts", "poll"))
        if text is None and media is None and not typed:
            raise InvalidInput("an incoming message needs text, media, a location, contacts or a poll")
        mid = message_id()
        fields = typed_content(
            text=text,
            location=kind.get("location"),
            contacts=kind.get("contacts"),
            poll=kind.get("poll"),
            view_once=bool(kind.get("view_once")),
            media=incoming_media(mid, media) if media is not None else None,
        )
        given = kind.get("sender")
        sender = to_jid(given) if given else (group_participant(chat) if is_group(chat) else chat)
        message = Message(
            id=mid,
            chat_id=chat,
            sender=sender,
            from_me=False,
            timestamp=now(),
            sender_name=push_name,
            quoted_id=kind.get("quoted_id"),
            **fields,
        )
        events: list[ClientEvent] = []
        if kind.get("subject") and is_group(chat):
            events.append(ContactName(chat, str(kind["subject"]), "subject"))
        routed = self._route(message)
        if routed is not None:
            events.append(MessageReceived(routed, chat_name=None if is_group(chat) else push_name))
        for event in events:
            if self._online.is_set():
                self._emit(event)
            else:
                self._tasks.spawn(self._when_online(event), f"deliver {mid}")
        log.debug("session %s: incoming %s %s from %s", self._sid, message.type, mid, chat)
        return routed or message

    async def contact(
        self,
        jid: str,
        name: str | None = None,
        push_name: str | None = None,
        picture: bool | None = None,
        lid: str | None = None,
        reveal_lid: bool = True,
        picture_ttl_s: float | None = None,
    ) -> None:
        """What the phone knows about a contact: its address-book name, its push name, its picture (a
        new one each time `picture` is true; none when false), its LID (revealed, or not yet)."""
        self._require_connected()
        if picture_ttl_s is not None:
            self.contacts.picture_ttl_s = picture_ttl_s
        target = "me" if jid == "me" else to_jid(jid)
        contact = self.contacts.get(target)
        if picture is True:
            self.contacts.set_picture(target, message_id())
        elif picture is False:
            contact.picture = contact.picture_id = None
        if target == "me":
            return
        if picture is not None:
            self._emit(PictureChanged(target))  # whatsmeow's events.Picture
        if name is not None:
            contact.name = name
            self._emit(ContactName(target, name, "contact"))
        if push_name is not None:
            contact.push_name = push_name
            self._emit(ContactName(target, push_name, "push"))
        if lid is not None:
            self.contacts.set_lid(target, to_jid(lid))
        if contact.lid and reveal_lid and not contact.lid_revealed:
            contact.lid_revealed = True
            self._emit(IdentityLink(lid=contact.lid, pn=target))

    async def history(self, chats: int, messages_per_chat: int) -> HistoryChunk:
        """One more history chunk of `chats` conversations, each `messages_per_chat` long."""
        self._require_connected()
        if not (1 <= chats <= MAX_HISTORY_CHATS and 1 <= messages_per_chat <= MAX_HISTORY_MESSAGES):
            raise InvalidInput(
                f"history is 1..{MAX_HISTORY_CHATS} chats of 1..{MAX_HISTORY_MESSAGES} messages"
            )
        chunk = HistoryChunk(make_history(self._own_jid(), chats, messages_per_chat))
        self._emit(chunk)
        return chunk

    async def drop(self, hang_reconnect: bool = False) -> None:
        """A transient network drop; reconnects by itself unless `hang_reconnect` (then never)."""
        self._require_connected()
        self._phase = Phase.RECONNECTING
        self._online.clear()
        self._emit(Disconnected(Reason.NETWORK, retrying=True))
        log.info("session %s: network dropped%s", self._sid, " (reconnect hangs)" if hang_reconnect else "")
        if not hang_reconnect:
            self._reconnect = self._tasks.spawn(self._reconnect_later(), "reconnect")

    async def unlink(self) -> None:
        """The phone removes this linked device: its row goes, `LoggedOut` follows; the client is done."""
        if self._phase not in PAIRED:
            raise SessionNotConnected("no device is linked")
        await self._store.delete_devices()
        self._done(Phase.LOGGED_OUT)
        self._emit(LoggedOut(Reason.LOGGED_OUT))
        log.info("session %s: the phone unlinked %s", self._sid, self._device_jid)

    async def sent(self) -> list[SentMessage]:
        """What the network received from this session, oldest first."""
        try:
            return await self._store.sent()
        finally:
            if self._phase is Phase.STOPPED:
                await self._store.close()


def digits_of(phone: str) -> str:
    try:
        return phone_digits(phone)
    except InvalidRecipient as err:
        raise InvalidPhone(f"{phone!r} is not a phone number") from err
