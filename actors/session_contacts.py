"""Who is who in a session's inbox: which chats it keeps, one chat per person, names and pictures.

- Scope (`kernel.inbox_scope`, `INBOX_CHATS`): every event that names a chat outside the inbox (a group
  under `direct`; status, newsletters, Meta AI, system chats always) is dropped before anything is
  written, so no chat is created that the API could not open.
- LID addressing: WhatsApp names one contact by phone number (PN) or by LID. Every link it reveals
  (`IdentityLink`) is journalled (`identity_link`) and kept in memory; every event's chat id is mapped to
  the PN before it is written, so receipts addressed to a LID chat still find the message sent to the PN
  chat; a LID chat stored before its link was known is merged into the PN chat when the link arrives.
- Names: `ContactName` with its source; the store keeps the best (address book > push name), and a chat
  with none shows its formatted number.
- Pictures: fetched lazily (the API asks for the chats of a listing never checked: `refresh_pictures`;
  the picture route fetches on demand), recorded in the chat row (id, CDN link, checked-at), their bytes
  in `picture_cache` (the API serves them from there) and a small in-memory LRU; refreshed when the CDN
  link's `oe=` expiry passes or the last check is a day old (`actors.pictures`). The API only ever hands
  out the bridge's own URL (`picture_path`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from actors.pictures import OWN_UNKNOWN, PictureState, own_picture
from actors.ports import PictureInfo
from actors.session_state import SessionState
from actors.writes import SaveContactName, SaveIdentityLink, SavePicture, SaveProfile
from kernel.domain import ContactInfo, Message
from kernel.errors import (
    ChatNotFound,
    MediaNotAvailable,
    PictureNotAvailable,
    ServiceUnavailable,
    SessionNotConnected,
    SessionNotFound,
)
from kernel.events import (
    ClientEvent,
    ContactName,
    GroupChanged,
    HistoryChunk,
    MessageReceived,
    PictureChanged,
)
from kernel.ids import to_jid
from kernel.inbox_scope import keeps

log = logging.getLogger(__name__)

PICTURE_MAX_BYTES = 2 * 1024 * 1024
PICTURE_FETCHES = 4  # pictures fetched at once
PICTURE_CACHE = 64  # pictures' bytes kept in memory
MAX_PENDING_NAMES = 5000


class Contacts:
    """Scope, identity links, names and pictures of one session."""

    def __init__(self, state: SessionState) -> None:
        self._state = state
        self._links: dict[str, str] = {}  # lid → pn: loaded from the store on first use, then learned
        self._links_loaded = False
        self._names: dict[str, SaveContactName] = {}  # names learned this process, by chat
        self._pictures: dict[str, PictureState] = {}
        self._picture_bytes: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._picture_gate = asyncio.Semaphore(PICTURE_FETCHES)
        self._picture_jobs: dict[str, asyncio.Task[Any]] = {}

    # ------------------------------------------------------------------ scope and addressing

    async def ensure_links(self) -> dict[str, str]:
        if not self._links_loaded:
            try:
                stored = await self._state.store.people.identity_links()
            except ServiceUnavailable:
                return self._links  # loaded on a later event; links learned meanwhile are kept and journalled
            self._links = {**stored, **self._links}
            self._links_loaded = True
        return self._links

    def canon(self, jid: str) -> str:
        return self._links.get(jid, jid)

    async def chat(self, chat_id: str) -> str:
        """The chat as the store keys it: a LID linked to a phone number is that number's chat."""
        jid = to_jid(chat_id)
        return (await self.ensure_links()).get(jid, jid)

    async def in_inbox(self, event: ClientEvent) -> ClientEvent | None:
        """`event` with its chat ids mapped to phone numbers; None when its chat is not the inbox's."""
        scope = self._state.config.inbox_chats
        if isinstance(event, ContactName | PictureChanged):
            await self.ensure_links()
            jid = self.canon(event.jid)
            return replace(event, jid=jid) if keeps(jid, scope) else None
        chat_id = getattr(event, "chat_id", None)
        if chat_id is None and not isinstance(event, MessageReceived | HistoryChunk):
            return event
        await self.ensure_links()
        if isinstance(event, MessageReceived):
            message = self._canon_message(event.message)
            return replace(event, message=message) if keeps(message.chat_id, scope) else None
        if isinstance(event, HistoryChunk):
            kept = []
            for conv in event.conversations:
                chat = self.canon(conv.chat_id)
                if keeps(chat, scope):
                    messages = tuple(self._canon_message(m) for m in conv.messages)
                    kept.append(replace(conv, chat_id=chat, messages=messages))
            return HistoryChunk(tuple(kept)) if kept else None
        assert chat_id is not None
        chat = self.canon(chat_id)
        if not keeps(chat, scope):
            return None
        return replace(event, chat_id=chat) if chat != chat_id else event  # type: ignore[arg-type]

    def canon_group(self, change: GroupChanged) -> GroupChanged:
        """A group's event with its people as their phone numbers' JIDs where the LID's number is known."""

        def people(jids: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(self.canon(j) for j in jids)

        return replace(
            change,
            by=self.canon(change.by) if change.by else None,
            joined=people(change.joined),
            left=people(change.left),
            promoted=people(change.promoted),
            demoted=people(change.demoted),
        )

    def _canon_message(self, message: Message) -> Message:
        chat, sender = self.canon(message.chat_id), self.canon(message.sender)
        if (chat, sender) == (message.chat_id, message.sender):
            return message
        alt = message.sender if sender != message.sender else message.sender_alt
        return replace(message, chat_id=chat, sender=sender, sender_alt=alt)

    def on_contact_name(self, jid: str, name: str, source: str) -> None:
        """Journal a name; remember it for a chat that does not exist yet (its first message names it)."""
        if len(self._names) >= MAX_PENDING_NAMES:
            self._names.pop(next(iter(self._names)))
        self._names[jid] = SaveContactName(jid, name, source)
        self._state.write(self._names[jid])

    def after_message(self, message: Message) -> None:
        """The chat of a message just written exists now: give it the name learned before it did."""
        pending = self._names.pop(message.chat_id, None)
        if pending is not None:
            self._state.write(pending)

    async def on_identity_link(self, lid: str, pn: str) -> None:
        links = await self.ensure_links()
        if links.get(lid) == pn:
            return
        links[lid] = pn
        self._state.write(SaveIdentityLink(lid, pn))

    # ------------------------------------------------------------------ pictures

    def refresh_pictures(self, stored: dict[str, PictureState]) -> int:
        """Start fetching the pictures of these chats (as stored) that were never fetched or are out of
        date; nothing waits for them. How many fetches started (none while not connected)."""
        if not self._state.connected():
            return 0
        now = datetime.now(UTC)
        started = 0
        for jid, state in stored.items():
            state = self._pictures.get(jid, state)
            if state.stale(now):
                self._picture_job(jid, state)
                started += 1
        return started

    def _picture_job(self, jid: str, state: PictureState) -> asyncio.Task[Any]:
        job = self._picture_jobs.get(jid)
        if job is None or job.done():
            job = self._state.tasks.spawn(self._refresh_picture(jid, state), f"picture {jid}")
            self._picture_jobs[jid] = job
        return job

    async def _refresh_picture(self, jid: str, state: PictureState, force: bool = False) -> PictureState:
        """Ask WhatsApp for `jid`'s picture when `state` is stale (or `force`); journal what changed."""
        session = self._state
        now = datetime.now(UTC)
        if not force and not state.stale(now):
            return state
        if not session.connected():
            return state
        client = session.client_if_connected()
        known = state.id if state.id and state.link_alive(now) and not force else None
        async with self._picture_gate:
            try:
                info = await client.profile_picture(jid, known)
            except (SessionNotConnected, ServiceUnavailable):
                return state
            except Exception:
                log.info("session %s: picture of %s not available", session.session_id, jid, exc_info=True)
                return state
        if info is None:
            fresh = PictureState(None, None, now)
        elif not info.url:
            fresh = replace(state, checked_at=now)  # unchanged
        else:
            fresh = PictureState(info.id, info.url, now)
        self._pictures[jid] = fresh
        if jid == session.own_jid():
            if fresh.url and fresh.url != (session.view.profile_pic_url if session.view else None):
                session.write(SaveProfile(None, None, fresh.url, None))
                session.update(profile_pic_url=fresh.url)
        else:
            session.write(SavePicture(jid, fresh.id, fresh.url, now))
        return fresh

    def on_picture_changed(self, jid: str) -> None:
        """WhatsApp says the picture changed: fetch it again on the next listing or request."""
        state = self._pictures.get(jid, PictureState())
        self._pictures[jid] = replace(state, checked_at=None)
        self._state.write(SavePicture(jid, state.id, state.url, None))

    def own_picture_on_connect(self, fetched_url: str | None) -> None:
        """Our own picture: what the login just fetched, or a fetch now (the simulated network's login
        fetches none)."""
        own = self._state.own_jid()
        if own is None:
            return
        if fetched_url:
            self._pictures[own] = PictureState(OWN_UNKNOWN, fetched_url, datetime.now(UTC))
            return
        view = self._state.view
        state = own_picture(view.profile_pic_url if view else None)
        self._state.tasks.spawn(self._refresh_picture(own, state), "own picture")

    async def contact(self, contact_id: str) -> ContactInfo:
        """What WhatsApp tells about a contact, and whether the inbox has a chat with them."""
        session = self._state
        await session.wait_ready()
        await self.ensure_links()
        jid = self.canon(to_jid(contact_id))
        info = await session.timed(session.client_if_connected().contact_info(jid))
        try:
            await session.store.people.picture(jid)
        except ChatNotFound:
            return info
        return replace(info, in_inbox=True)

    async def set_blocked(self, contact_id: str, blocked: bool) -> None:
        session = self._state
        await session.wait_ready()
        jid = self.canon(to_jid(contact_id))
        await session.timed(session.client_if_connected().set_blocked(jid, blocked))

    async def chat_picture(self, chat_id: str) -> tuple[bytes, str]:
        """The picture of a chat (or of our own number): its bytes and mimetype. 404 when the chat is
        unknown or has no picture; 409 when it was never fetched and the session is not connected."""
        session = self._state
        await session.wait_ready()
        await self.ensure_links()
        jid = self.canon(to_jid(chat_id))
        state = self._pictures.get(jid)
        if state is None:
            if jid == session.own_jid():
                state = own_picture(session.view.profile_pic_url if session.view else None)
            else:
                stored = await session.store.people.picture(jid)  # ChatNotFound for an unknown chat
                state = PictureState(stored.id, stored.url, stored.checked_at)
        if state.stale(datetime.now(UTC)):
            if not session.connected() and self._cached_picture(state) is None:
                raise SessionNotConnected()
            state = await self._refresh_picture(jid, state)
        if state.id is None or not state.url:
            raise PictureNotAvailable()
        cached = self._cached_picture(state)
        if cached is not None:
            return cached
        client = session.client_if_connected()
        try:
            data = await client.download_picture(PictureInfo(state.id, state.url), PICTURE_MAX_BYTES)
        except MediaNotAvailable:
            # The link died before its stated expiry (or the picture changed): ask again, once.
            state = await self._refresh_picture(jid, state, force=True)
            if state.id is None or not state.url:
                raise PictureNotAvailable() from None
            data = await client.download_picture(PictureInfo(state.id, state.url), PICTURE_MAX_BYTES)
        mimetype = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        self._cache_picture(state, data, mimetype)
        # For the API to serve without this process (best effort: a miss only means fetching again).
        session.tasks.spawn(self._keep_picture(jid, state.key, mimetype, data), f"picture cache {jid}")
        return data, mimetype

    async def _keep_picture(self, jid: str, key: str, mimetype: str, data: bytes) -> None:
        try:
            await self._state.store.people.cache_picture(jid, key, mimetype, data)
        except (ServiceUnavailable, SessionNotFound) as err:
            log.info("session %s: picture of %s not cached (%s)", self._state.session_id, jid, err.code)

    def _cached_picture(self, state: PictureState) -> tuple[bytes, str] | None:
        key = f"{state.id}|{state.url}"
        if key not in self._picture_bytes:
            return None
        self._picture_bytes.move_to_end(key)
        return self._picture_bytes[key]

    def _cache_picture(self, state: PictureState, data: bytes, mimetype: str) -> None:
        self._picture_bytes[f"{state.id}|{state.url}"] = (data, mimetype)
        while len(self._picture_bytes) > PICTURE_CACHE:
            self._picture_bytes.popitem(last=False)
