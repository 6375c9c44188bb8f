"""The hub's reader of the event log (`wa:events`, `api.eventlog`): one per API process.

It reads from the last entry it handled, so after a Redis blink it catches up where it stopped: no gap,
no duplicate (a copy a session re-sent is dropped). Each entry becomes a frame whose `cursor` is the
entry id, routed to the sockets of the session's owner (`api.owners`). The loop is supervised: an entry
that cannot be decoded is logged and skipped; any other failure is logged, counts as "not delivering"
(`events_ok`, /health) and the loop starts again with capped backoff. Owner lookups run concurrently and
are waited for at most `owner_lookup.WAIT_S`: an owner that cannot be resolved yet has that session's
entries skipped (a reconnecting client gets them by replay), so one session never stalls the others.

When Redis answers again and the log no longer holds the last entry handled (Redis restarted empty, or
the log was trimmed past it meanwhile), entries may be gone: every socket gets a `resync` frame (reason
`history_lost`) and reading goes on from the log's newest entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api import eventlog
from api.hub_announce import routed
from api.hub_fanout import Fanout
from api.metrics import Metrics
from api.owner_lookup import OwnerResolver
from api.subscribers import FRAME_TYPES
from kernel.wire import EVENTS_STREAM

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 5.0
READ_BLOCK_MS = 1000
READ_COUNT = 500
# The reader counts as not delivering when it has not completed a read for this long, or has been
# reading full batches (a backlog) for this long.
STALE_S = 5.0


class LogReader:
    """Reads the event log into a `Fanout`; knows whether Redis is up and how far it has read."""

    def __init__(self, redis_url: str, fanout: Fanout, resolver: OwnerResolver, metrics: Metrics) -> None:
        self._redis_url = redis_url
        self._fanout = fanout
        self._resolver = resolver
        self._metrics = metrics
        self._queries: Redis | None = None
        self._position: str | None = None  # the last entry handled; None until the log was first read
        self._duplicates = eventlog.Duplicates()
        self._redis_up = False
        self._read_at = 0.0
        self._backlog_since: float | None = None
        self._catch_up = False
        self.positioned = asyncio.Event()  # set once the log was first read: `position` is known
        # Besides cancelling: redis-py can swallow a cancellation that lands as its read timeout expires.
        self._stopping = False

    @property
    def position(self) -> str:
        """The cursor of the last entry handled (`0-0` before the log was first read)."""
        return self._position or eventlog.START

    @property
    def redis_up(self) -> bool:
        return self._redis_up

    @property
    def events_ok(self) -> bool:
        """Whether live events are being delivered: the log read lately and not lagging behind it."""
        now = time.monotonic()
        behind = self._backlog_since is not None and now - self._backlog_since > STALE_S
        return self._redis_up and now - self._read_at < STALE_S and not behind

    def take_catch_up(self) -> bool:
        """Whether the log came back since the last call (what changed meanwhile is polled once)."""
        catch_up, self._catch_up = self._catch_up, False
        return catch_up

    def stopping(self) -> None:
        self._stopping = True

    async def close(self) -> None:
        if self._queries is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queries.aclose(), 2.0)

    def _redis(self) -> Redis:
        return Redis.from_url(
            self._redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 0),
        )

    def is_known_copy(self, entry_id: str) -> bool:
        """Whether the entry is the copy of one already handled (re-sent by its session)."""
        return self._duplicates.is_known_copy(entry_id)

    def query_client(self) -> Redis:
        """The connection for queries (and the API's own events), opened on first use."""
        return self._query_client()

    def _query_client(self) -> Redis:
        if self._queries is None:
            self._queries = self._redis()
        return self._queries

    async def run(self) -> None:
        """Read the log from the last entry handled, forever; every failure is logged and retried."""
        backoff = 0.25
        while not self._stopping:
            client = self._redis()
            try:
                if self._position is None:
                    self._position = await eventlog.last_id(client)
                    self.positioned.set()
                elif not self._redis_up and not await eventlog.resumable(client, self._position):
                    await self._history_lost(client)
                while not self._stopping:
                    got: Any = await client.xread(
                        {EVENTS_STREAM: self._position}, count=READ_COUNT, block=READ_BLOCK_MS
                    )
                    self._went_up()
                    backoff = 0.25
                    entries = got[0][1] if got else []
                    now = time.monotonic()
                    self._read_at = now
                    if len(entries) < READ_COUNT:
                        self._backlog_since = None
                    elif self._backlog_since is None:
                        self._backlog_since = now
                    await self._handle(entries)
                return
            except (RedisError, OSError) as err:
                self._went_down(err)
            except Exception as err:
                log.exception("the event log reader failed; starting it again")
                self._went_down(err)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 2.0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _history_lost(self, client: Redis) -> None:
        """The log no longer holds the last entry read (Redis came back empty, or trimmed past it while
        we were away): what was logged after it may be gone, so every socket reloads."""
        log.warning(
            "the event log lost its history (entry %s is gone); WebSocket clients resync", self._position
        )
        self._position = await eventlog.last_id(client)
        self._fanout.resync_all("history_lost", self._position)

    def _went_up(self) -> None:
        if not self._redis_up:
            log.info("reading the event log from %s", self._position)
            self._catch_up = True  # what changed while we were not listening
        self._redis_up = True
        self._metrics.event_subscription.set(1)

    def _went_down(self, err: BaseException) -> None:
        if self._redis_up:
            log.warning("lost the event log (%s); polling session status instead", type(err).__name__)
        self._redis_up = False
        self._metrics.event_subscription.set(0)

    async def _handle(self, raw: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Deliver a batch of entries in order; the position moves past each one, delivered or not."""
        entries = [(entry_id, self._decoded(entry_id, fields)) for entry_id, fields in raw]
        users = self._fanout.users()
        watched = {e.session_id for _, e in entries if e is not None} if users else set()
        owners = await self._resolver.resolve(watched)
        for entry_id, entry in entries:
            self._position = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if entry is None or self._duplicates.is_copy(entry):
                continue
            frame_type = FRAME_TYPES[entry.kind]
            self._metrics.events.labels(type=frame_type).inc()
            announced_to, payload = routed(entry.kind, entry.payload)
            owner = announced_to or owners.get(entry.session_id)
            if owner is not None:
                self._fanout.deliver_entry(owner, frame_type, entry.session_id, payload, entry.id)

    def _decoded(self, entry_id: bytes, fields: dict[bytes, bytes]) -> eventlog.Entry | None:
        try:
            entry = eventlog.decode(entry_id, fields)
            if entry.kind not in FRAME_TYPES:
                raise ValueError(f"unknown event kind {entry.kind[:40]!r}")
            return entry
        except (ValueError, KeyError) as err:
            log.warning("skipping a malformed event log entry %r (%s)", entry_id, type(err).__name__)
            self._metrics.events_skipped.labels(why="malformed").inc()
            return None
