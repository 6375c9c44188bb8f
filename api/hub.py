"""Live events for WebSocket clients: one reader of the event log per API process, fanned out in-process.

The hub is three collaborators, each built here and owning its own state:
- `Fanout` (`api.hub_fanout`): who listens, per user, and queueing frames to them. Each socket has a
  bounded queue; queuing never blocks: a socket whose queue is full is dropped (it reconnects with its
  last cursor), so one slow or dead client never delays the others.
- `LogReader` (`api.hub_reader`): reads the `wa:events` stream from the last entry it handled into the
  fanout, and says whether Redis is up (`events_ok`, /health).
- `Replays` (`api.hub_replay`): what a resuming client missed, read from its user's index streams only,
  streamed, with a reconnect storm bounded.
- `StatusPolling` (`api.hub_polling`): the snapshot a client gets on open, and, while Redis is down,
  the sessions somebody watches read from PostgreSQL every `poll_interval_s`, a `status` (and `qr`)
  frame queued when it changed; once the log is readable again polling stops (after one catch-up
  round). Neither the snapshot nor polling asks a session's process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable

from actors.tasks import TaskGroup
from api.database import Database
from api.hub_announce import Announcer
from api.hub_fanout import Fanout
from api.hub_polling import POLL_INTERVAL_S, StatusPolling
from api.hub_reader import LogReader
from api.hub_replay import Replays
from api.metrics import Metrics
from api.owner_lookup import OwnerResolver
from api.owners import SessionOwners
from api.subscribers import (
    GOING_AWAY,
    NORMAL_CLOSURE,
    QUEUE_FRAMES,
    TRY_AGAIN_LATER,
    Subscriber,
    frame_text,
)
from kernel.domain import SessionView

__all__ = [
    "GOING_AWAY",
    "NORMAL_CLOSURE",
    "POLL_INTERVAL_S",
    "TRY_AGAIN_LATER",
    "EventHub",
    "Subscriber",
    "frame_text",
]


class EventHub:
    """The live events of one API process (see the module's docstring)."""

    def __init__(
        self,
        redis_url: str,
        db: Database,
        owners: SessionOwners,
        metrics: Metrics,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        queue_frames: int = QUEUE_FRAMES,
    ) -> None:
        self._fanout = Fanout(owners, metrics, queue_frames)
        self._resolver = OwnerResolver(owners, metrics)
        self._log = LogReader(redis_url, self._fanout, self._resolver, metrics)
        self._polling = StatusPolling(db, self._fanout, self._log, poll_interval_s)
        self._replays = Replays(self._log.query_client, self._log.is_known_copy, metrics)
        self._tasks = TaskGroup("event hub")
        self._announcer: Announcer | None = None

    async def session_deleted(self, user_id: str, session_id: str) -> None:
        """Tell the user's open clients, through every API process, that the session is gone."""
        if self._announcer is None:
            self._announcer = Announcer(self._log.query_client())
        await self._announcer.session_deleted(user_id, session_id)

    def start(self) -> None:
        self._tasks.spawn(self._log.run(), "event log reader")
        self._tasks.spawn(self._polling.run(), "status polling")

    async def stop(self) -> None:
        self._log.stopping()
        await self._tasks.cancel_all()
        self._resolver.cancel()
        await self._log.close()
        self._fanout.drop_all(GOING_AWAY)

    @property
    def redis_up(self) -> bool:
        return self._log.redis_up

    @property
    def events_ok(self) -> bool:
        return self._log.events_ok

    @property
    def position(self) -> str:
        return self._log.position

    async def ready(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until the log was first read, so a socket's start is known: right
        after the API starts, a resuming client would otherwise find nothing to replay before it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._log.positioned.wait(), timeout_s)

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
        return self._fanout.subscribe(user_id, session_filter, sessions, start=self.position, cursor=cursor)

    def unsubscribe(self, sub: Subscriber) -> None:
        self._fanout.unsubscribe(sub)

    def snapshot(self, sub: Subscriber, sessions: Iterable[SessionView]) -> list[str]:
        return self._polling.snapshot(sub, sessions)

    def replay(self, sub: Subscriber, cursor: str, sessions: Iterable[str]) -> AsyncGenerator[str, None]:
        """The frames `sub` missed after `cursor`, one at a time (`api.hub_replay`); close it when done."""
        return self._replays.frames(sub, cursor, sessions)

    async def poll_once(self) -> None:
        await self._polling.poll_once()
