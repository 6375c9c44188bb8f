"""What the routes read: answered from PostgreSQL, whatever the session's process is doing.

While PostgreSQL answers, a read never waits for Ray and never fails because a session's process is
starting, restarting, moving or waiting for capacity (`Session.live` says whether it is up and
connected). Two exceptions: a picture the store cannot serve (never downloaded, or out of date) is live
work, asked of the session (`SessionActor.chat_picture`), and the bytes cached last are served if it
cannot answer; and with the database away, the status is asked of the session instead.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from actors.pictures import PictureState, cache_serves
from api.resources import ApiResources
from kernel.domain import Chat, Message, Page, SessionView
from kernel.errors import (
    ServiceUnavailable,
    SessionNotConnected,
    SessionNotFound,
    SessionUnavailable,
    WaError,
)
from kernel.wire import picture_path
from persistence import reads

log = logging.getLogger(__name__)

# How long a picture the store cannot serve as it is waits for the session, when bytes are cached.
PICTURE_REFRESH_TIMEOUT_S = 3.0
# How long the status waits for the session's process when the database cannot answer.
STATUS_FALLBACK_TIMEOUT_S = 2.0


async def session_status(res: ApiResources, user: str, session_id: str) -> SessionView:
    """The session as stored, with `live` and the QR / pairing code its process shows now.

    With PostgreSQL away (and only then), the session's process is asked instead, briefly (DESIGN's
    "status from the actor when it can"); the database's 503 stands if it cannot say either.
    """
    try:
        return await res.db.run(reads.session_status, user, session_id)
    except SessionNotFound:
        res.owners.forget(session_id)  # deleted meanwhile, e.g. through another API process
        raise
    except ServiceUnavailable as down:
        try:
            return await res.actors.status(session_id, timeout_s=STATUS_FALLBACK_TIMEOUT_S)
        except WaError as err:
            log.info("session %s: no status without the database (%s)", session_id, err.code)
            raise down from None


async def chats(res: ApiResources, session_id: str, limit: int, cursor: str | None) -> Page[Chat]:
    """A page of chats with the bridge's picture URLs; pictures never fetched are asked for, unwaited."""
    page = await res.db.run(reads.chats, session_id, limit, cursor)
    now = datetime.now(UTC)
    states = {c.id: PictureState(c.picture_id, c.picture_url, c.picture_checked_at) for c in page.items}
    stale = {jid: state for jid, state in states.items() if state.stale(now)}
    if stale:
        res.actors.refresh_pictures_soon(session_id, stale)
    items = tuple(
        replace(c, picture_url=picture_path(session_id, c.id) if c.picture_id is not None else None)
        for c in page.items
    )
    return Page(items=items, next_cursor=page.next_cursor)


async def messages(
    res: ApiResources, session_id: str, chat_id: str, limit: int, cursor: str | None
) -> Page[Message]:
    return await res.db.run(reads.messages, session_id, chat_id, limit, cursor)


async def picture(res: ApiResources, session_id: str, chat_id: str) -> tuple[bytes, str]:
    """A chat's (or our own) picture: from the store when cached and current, else from the session."""
    found = await res.db.run(reads.picture, session_id, chat_id)
    stored, cached = found.stored, found.cached
    state = PictureState(stored.id, stored.url, stored.checked_at)
    if cached is not None and cache_serves(state, cached.key, datetime.now(UTC), own=found.own):
        return cached.data, cached.mimetype
    if cached is None:
        return await res.actors.chat_picture(session_id, found.chat_id)
    try:
        return await res.actors.chat_picture(session_id, found.chat_id, timeout_s=PICTURE_REFRESH_TIMEOUT_S)
    except (SessionUnavailable, ServiceUnavailable, SessionNotConnected) as err:
        log.info("session %s: picture of %s as cached (%s)", session_id, found.chat_id, err.code)
        return cached.data, cached.mimetype
