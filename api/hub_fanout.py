"""The hub's subscribers in one API process, and how a frame reaches their queues without blocking."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from api import eventlog
from api.metrics import Metrics
from api.owners import SessionOwners
from api.subscribers import TRY_AGAIN_LATER, Subscriber, changed, frame_text
from kernel.domain import SessionView
from kernel.wire import JSON

log = logging.getLogger(__name__)


class Fanout:
    """Who listens, per user, and the queueing of frames to them (`EventHub` sets the state)."""

    _owners: SessionOwners
    _metrics: Metrics
    _queue_frames: int
    _by_user: dict[str, set[Subscriber]]
    _user_sessions: dict[str, list[SessionView]]
    _position: str | None

    @property
    def position(self) -> str:
        """The cursor of the last entry handled (`0-0` before the log was first read)."""
        return self._position or eventlog.START

    # ------------------------------------------------------------------ subscribers

    def subscribe(
        self,
        user_id: str,
        session_filter: str | None,
        sessions: Iterable[SessionView],
        *,
        cursor: str | None = None,
    ) -> Subscriber:
        """Register a client of `user_id`; `sessions` are the user's sessions as the caller just read them.

        From now on it is queued the entries after `hub.position` (and after `cursor`, which it has).
        """
        sub = Subscriber(user_id, session_filter, self.position, self._queue_frames)
        if eventlog.parse_cursor(cursor) is not None:
            sub.seen_upto = str(cursor)
        self._by_user.setdefault(user_id, set()).add(sub)
        views = list(sessions)
        self._user_sessions[user_id] = views
        for view in views:
            self._owners.learn(view.id, user_id)
        self._metrics.ws_clients.inc()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._by_user.get(sub.user_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._by_user[sub.user_id]
            self._user_sessions.pop(sub.user_id, None)
        self._metrics.ws_clients.dec()

    def _offer(self, sub: Subscriber, frame_type: str, session_id: str, payload: JSON, text: str) -> None:
        if sub.dropped.is_set():
            return
        try:
            sub.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning(
                "dropping a WebSocket client of user %s: %d frames unsent", sub.user_id, sub.queue.qsize()
            )
            self._metrics.ws_dropped.inc()
            sub.drop(TRY_AGAIN_LATER)
            self.unsubscribe(sub)
            return
        sub.remember(frame_type, session_id, payload)
        self._metrics.ws_frames.labels(type=frame_type).inc()

    def _deliver(
        self,
        user_id: str,
        frame_type: str,
        session_id: str,
        payload: JSON,
        *,
        cursor: str | None = None,
    ) -> None:
        """Queue a frame to the user's sockets watching the session: a log entry (`cursor`), or a polled
        change (no cursor: sent only to sockets not yet told, with the current position)."""
        text: str | None = None
        for sub in list(self._by_user.get(user_id, ())):
            if not sub.wants(session_id):
                continue
            if cursor is None and not changed(sub, frame_type, session_id, payload):
                continue
            if cursor is not None and not eventlog.after(cursor, sub.seen_upto):
                continue
            text = text or frame_text(frame_type, session_id, payload, cursor=cursor or self.position)
            self._offer(sub, frame_type, session_id, payload, text)

    def _watched(self, user_id: str, session_id: str) -> bool:
        return any(sub.wants(session_id) for sub in self._by_user.get(user_id, ()))
