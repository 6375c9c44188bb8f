"""Status polling while Redis is down: the actors of watched sessions are asked, changes are queued."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from api.database import Database
from api.handles import SessionActors
from api.hub_fanout import Fanout
from api.subscribers import Subscriber, frame_text, qr_of
from kernel.domain import SessionView
from kernel.errors import WaError
from kernel.wire import status_payload
from persistence import repo

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0
STATUS_TIMEOUT_S = 2.0


class StatusPolling(Fanout):
    """The snapshot a client gets on open, and polling rounds while the event log is unreadable."""

    _db: Database
    _actors: SessionActors
    _poll_interval_s: float
    _redis_up: bool
    _catch_up: bool

    async def snapshot(self, sub: Subscriber, sessions: Iterable[SessionView]) -> list[str]:
        """The frames a client gets on open: a `status` per session, and the `qr` showing, if any."""
        frames: list[str] = []
        for view in await self._live_views([v for v in sessions if sub.wants(v.id)]):
            payload = status_payload(view)
            sub.remember("status", view.id, payload)
            frames.append(frame_text("status", view.id, payload, cursor=sub.start))
            qr = qr_of(view)
            if qr is not None:
                sub.remember("qr", view.id, qr)
                frames.append(frame_text("qr", view.id, qr, cursor=sub.start))
        return frames

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            if self._redis_up and not self._catch_up:
                continue
            self._catch_up = False
            try:
                await self.poll_once()
            except Exception:
                log.exception("status polling round failed")

    async def poll_once(self) -> None:
        """Ask the actors of every watched session for their status; queue what changed."""
        users = list(self._by_user)
        for user_id in users:
            try:
                self._user_sessions[user_id] = await self._db.run(repo.list_sessions, user_id)
            except WaError:
                pass  # the database is down too: keep polling the sessions we knew of
        rounds = [self._poll_user(user_id) for user_id in users]
        await asyncio.gather(*rounds)

    async def _poll_user(self, user_id: str) -> None:
        watched = [v for v in self._user_sessions.get(user_id, []) if self._watched(user_id, v.id)]
        for view in await self._live_views(watched):
            self._deliver(user_id, "status", view.id, status_payload(view))
            qr = qr_of(view)
            if qr is not None:
                self._deliver(user_id, "qr", view.id, qr)

    async def _live_views(self, views: list[SessionView]) -> list[SessionView]:
        """Each session as its actor sees it now; the given (database) view when the actor cannot say."""

        async def live(view: SessionView) -> SessionView:
            try:
                return await self._actors.status(view.id, timeout_s=STATUS_TIMEOUT_S)
            except Exception as err:  # unavailable, or failing: what the database says is the best we have
                log.debug("session %s: status from the database (%s)", view.id, type(err).__name__)
                return view

        return list(await asyncio.gather(*(live(v) for v in views)))
