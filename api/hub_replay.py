"""What a resuming WebSocket client missed: only its user's entries, streamed, a reconnect storm bounded.

A resume reads the index streams (`kernel.event_index`) of the user's sessions the socket watches and
the user's own stream (the API's announcements), each a page at a time, from the cursor up to where the
socket went live (`Subscriber.start`), merged in id order (the ids are the shared log's). It never reads
another user's entry, and holds at most a page per stream: frames are handed out one at a time, so the
socket's sending paces the reading and nothing is buffered beyond the pages in hand.

A reconnect storm (every client of an API process back at once after a restart) is bounded three ways:
at most `per_user` resumes of one user and `resumes` in all run at a time (so the pages held are at most
`resumes` x streams x `page` entries), and at most `reads` Redis reads for resumes run at a time; the
rest wait their turn, in order (`wab_ws_resumes_waiting`). Live frames meanwhile wait in
the socket's bounded queue; a socket whose queue fills is dropped with 1013 like any slow client and
comes back with the last cursor it got, so it goes on from there.

A replay that cannot be had whole (cursor invalid, older than the window, Redis unreadable) is one
`resync` frame; if Redis fails after some frames went out, a `resync` frame follows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api import eventlog
from api.hub_announce import routed
from api.metrics import Metrics
from api.subscribers import FRAME_TYPES, Subscriber, frame_text
from kernel.event_index import session_index, user_index

log = logging.getLogger(__name__)

PAGE = 100
PER_USER = 2
RESUMES = 64
READS = 8

T = TypeVar("T")


class _Stream:
    """One index stream being read a page at a time."""

    def __init__(self, key: str, cursor: str) -> None:
        self.key = key
        self.low = cursor
        self.buffer: list[tuple[str, Any]] = []
        self.done = False


class Replays:
    """The resumes of one API process (see the module's docstring)."""

    def __init__(
        self,
        client: Callable[[], Redis],
        known_copy: Callable[[str], bool],
        metrics: Metrics,
        *,
        page: int = PAGE,
        per_user: int = PER_USER,
        resumes: int = RESUMES,
        reads: int = READS,
    ) -> None:
        self._client = client
        self._known_copy = known_copy
        self._metrics = metrics
        self._page = page
        self._per_user = per_user
        self._resumes = asyncio.Semaphore(resumes)
        self._reads = asyncio.Semaphore(reads)
        self._users: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def frames(
        self, sub: Subscriber, cursor: str, sessions: Iterable[str]
    ) -> AsyncGenerator[str, None]:
        """The frames of `sessions` (those `sub` watches) after `cursor` up to where `sub` went live, in
        order; or one `resync` frame when they cannot all be had."""
        async with self._turn(sub.user_id):
            reason = "invalid_cursor" if eventlog.parse_cursor(cursor) is None else None
            if reason is None and cursor != eventlog.START and sub.start == eventlog.START:
                reason = "unavailable"  # it went live before this process first read the log
            sent = 0
            try:
                if reason is None and not await self._read(lambda c: eventlog.resumable(c, cursor)):
                    reason = "cursor_expired"
                if reason is None and eventlog.after(sub.start, cursor):
                    self._metrics.ws_resumes.inc()
                    keys = [session_index(sid) for sid in sessions if sub.wants(sid)]
                    async for text in self._merged(sub, cursor, [*keys, user_index(sub.user_id)]):
                        sent += 1
                        yield text
            except (RedisError, OSError) as err:
                log.info("cannot replay events for user %s (%s)", sub.user_id, type(err).__name__)
                reason = "unavailable"
            if reason is not None:
                sub.seen_upto = eventlog.START  # the client reloads: whatever comes live is news
                self._metrics.ws_resyncs.labels(reason=reason).inc()
                log.info("user %s resumes from an unusable cursor (%s): resync", sub.user_id, reason)
                yield frame_text("resync", sub.session_filter, {"reason": reason}, cursor=sub.start)

    async def _merged(self, sub: Subscriber, cursor: str, keys: list[str]) -> AsyncIterator[str]:
        """The frames of the entries of `keys` in (cursor, sub.start], in id order, a page at a time."""
        streams = [_Stream(key, cursor) for key in keys]
        copies = eventlog.Duplicates()
        while True:
            for stream in streams:
                if not stream.buffer and not stream.done:
                    await self._fill(stream, sub.start)
            live = [s for s in streams if s.buffer]
            if not live:
                return
            first = min(live, key=lambda s: eventlog.parse_cursor(s.buffer[0][0]) or (0, 0))
            entry_id, fields = first.buffer.pop(0)
            entry = _decoded(entry_id, fields)
            if entry is None or copies.is_copy(entry) or self._known_copy(entry.id):
                continue
            owner, payload = routed(entry.kind, entry.payload)
            if (owner is not None and owner != sub.user_id) or not sub.wants(entry.session_id):
                continue
            yield frame_text(FRAME_TYPES[entry.kind], entry.session_id, payload, cursor=entry.id)

    async def _fill(self, stream: _Stream, upto: str) -> None:
        found = await self._read(lambda c: eventlog.page(c, stream.key, stream.low, upto, self._page))
        self._metrics.ws_resume_entries.inc(len(found))
        stream.buffer = found
        stream.done = len(found) < self._page
        if found:
            stream.low = found[-1][0]

    async def _read(self, query: Callable[[Redis], Awaitable[T]]) -> T:
        async with self._reads:
            return await query(self._client())

    @contextlib.asynccontextmanager
    async def _turn(self, user_id: str) -> AsyncIterator[None]:
        """One of the user's `per_user` turns and of the process's `resumes` (counted while waiting)."""
        gate, users = self._users.get(user_id) or (asyncio.Semaphore(self._per_user), 0)
        self._users[user_id] = (gate, users + 1)
        waiting = gate.locked() or self._resumes.locked()
        if waiting:
            self._metrics.ws_resumes_waiting.inc()
        try:
            try:
                await gate.acquire()
                try:
                    await self._resumes.acquire()
                except BaseException:
                    gate.release()
                    raise
            finally:
                if waiting:
                    self._metrics.ws_resumes_waiting.dec()
            try:
                yield
            finally:
                self._resumes.release()
                gate.release()
        finally:
            gate, users = self._users[user_id]
            if users <= 1:
                del self._users[user_id]
            else:
                self._users[user_id] = (gate, users - 1)


def _decoded(entry_id: str, fields: dict[bytes, bytes]) -> eventlog.Entry | None:
    try:
        entry = eventlog.decode(entry_id, fields)
    except (ValueError, KeyError):
        return None  # the live reader logged it when it met it
    return entry if entry.kind in FRAME_TYPES else None
