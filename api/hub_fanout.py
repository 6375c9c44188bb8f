"""Who listens in one API process, per user, and how a frame reaches their queues without blocking."""

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
    """The subscribers of each user and the queueing of frames to them; it owns nothing else."""

    def __init__(self, owners: SessionOwners, metrics: Metrics, queue_frames: int) -> None:
        self._owners = owners
        self._metrics = metrics
        self._queue_frames = queue_frames
        self._by_user: dict[str, set[Subscriber]] = {}

    def subscribe(
        self,
        user_id: str,
        session_filter: str | None,
        sessions: Iterable[SessionView],
        *,
        start: str,
        cursor: str | None = None,
    ) -> Subscriber:
        """Register a client of `user_id` that is queued the entries after `start` (and after `cursor`,
        which it has); `sessions` are the user's sessions as the caller just read them."""
        sub = Subscriber(user_id, session_filter, start, self._queue_frames)
        if eventlog.parse_cursor(cursor) is not None:
            sub.seen_upto = str(cursor)
        self._by_user.setdefault(user_id, set()).add(sub)
        for view in sessions:
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
        self._metrics.ws_clients.dec()

    def users(self) -> list[str]:
        """The users with at least one subscriber."""
        return list(self._by_user)

    def watched(self, user_id: str, session_id: str) -> bool:
        return any(sub.wants(session_id) for sub in self._by_user.get(user_id, ()))

    def drop_all(self, close_code: int) -> None:
        for subs in list(self._by_user.values()):
            for sub in subs:
                sub.drop(close_code)
        self._by_user.clear()

    def deliver_entry(
        self, user_id: str, frame_type: str, session_id: str, payload: JSON, cursor: str
    ) -> None:
        """Queue a log entry to the user's sockets watching the session that do not have it yet."""
        text: str | None = None
        for sub in self._watching(user_id, session_id):
            if eventlog.after(cursor, sub.seen_upto):
                text = text or frame_text(frame_type, session_id, payload, cursor=cursor)
                self._offer(sub, frame_type, session_id, payload, text)

    def deliver_change(
        self, user_id: str, frame_type: str, session_id: str, payload: JSON, position: str
    ) -> None:
        """Queue a polled state to the user's sockets watching the session that were not told it yet,
        with the log's current `position` as its cursor."""
        text: str | None = None
        for sub in self._watching(user_id, session_id):
            if changed(sub, frame_type, session_id, payload):
                text = text or frame_text(frame_type, session_id, payload, cursor=position)
                self._offer(sub, frame_type, session_id, payload, text)

    def resync_all(self, reason: str, cursor: str) -> None:
        """Tell every socket to reload (a `resync` frame): what it would have been sent may be gone."""
        payload = {"reason": reason}
        for subs in list(self._by_user.values()):
            for sub in list(subs):
                sub.seen_upto = eventlog.START  # it reloads: whatever comes live is news
                self._metrics.ws_resyncs.labels(reason=reason).inc()
                text = frame_text("resync", sub.session_filter, payload, cursor=cursor)
                self._offer(sub, "resync", sub.session_filter or "", payload, text)

    def _watching(self, user_id: str, session_id: str) -> list[Subscriber]:
        return [sub for sub in self._by_user.get(user_id, ()) if sub.wants(session_id)]

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
