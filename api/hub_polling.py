"""The snapshot a WebSocket gets on open, and status polling while Redis is down: both from PostgreSQL.

Neither asks a session's process: what a client is shown is the session's row and its heartbeat
(`persistence.reads.sessions_shown`: the status, and the QR a live process shows), so a snapshot or a
poll answers the same whether the process is up, restarting, moving or waiting for capacity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from api import eventlog
from api.database import Database
from api.hub_fanout import Fanout
from api.hub_reader import LogReader
from api.subscribers import Subscriber, frame_text, qr_of
from kernel.domain import SessionView
from kernel.errors import WaError
from kernel.wire import status_payload
from persistence import reads

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0


class StatusPolling:
    """The snapshot a client gets on open, and polling rounds while the event log is unreadable."""

    def __init__(self, db: Database, fanout: Fanout, log_reader: LogReader, interval_s: float) -> None:
        self._db = db
        self._fanout = fanout
        self._log = log_reader
        self._interval_s = interval_s

    def snapshot(self, sub: Subscriber, sessions: Iterable[SessionView]) -> list[str]:
        """The frames a client gets on open: a `status` per session, and the `qr` showing, if any.

        `sessions` as `persistence.reads.sessions_shown` read them (the QR comes with the heartbeat).
        They carry the log's position, or a resuming client's own cursor: a client dropped before its
        missed frames reach it (waiting its turn in a reconnect storm, `api.hub_replay`) then resumes
        from where it was again, not past what it missed.
        """
        at = sub.seen_upto if sub.seen_upto != eventlog.START else sub.start
        frames: list[str] = []
        for view in sessions:
            if not sub.wants(view.id):
                continue
            payload = status_payload(view)
            sub.remember("status", view.id, payload)
            frames.append(frame_text("status", view.id, payload, cursor=at))
            qr = qr_of(view)
            if qr is not None:
                sub.remember("qr", view.id, qr)
                frames.append(frame_text("qr", view.id, qr, cursor=at))
        return frames

    async def run(self) -> None:
        """Poll while the log is unreadable, and once more after it came back; forever."""
        while True:
            await asyncio.sleep(self._interval_s)
            if self._log.redis_up and not self._log.take_catch_up():
                continue
            try:
                await self.poll_once()
            except Exception:
                log.exception("status polling round failed")

    async def poll_once(self) -> None:
        """Read every watching user's sessions from PostgreSQL; queue what changed."""
        await asyncio.gather(*(self._poll_user(user_id) for user_id in self._fanout.users()))

    async def _poll_user(self, user_id: str) -> None:
        try:
            views = await self._db.run(reads.sessions_shown, user_id)
        except WaError as err:  # the database is down too: the clients keep what they were told
            log.debug("user %s: no status polled (%s)", user_id, err.code)
            return
        position = self._log.position
        for view in views:
            if not self._fanout.watched(user_id, view.id):
                continue
            self._fanout.deliver_change(user_id, "status", view.id, status_payload(view), position)
            qr = qr_of(view)
            if qr is not None:
                self._fanout.deliver_change(user_id, "qr", view.id, qr, position)
