"""A session's events to Redis. Redis being down never stops or slows a session, and loses no message.

Each event is added to the replayable log (the `wa:events` stream, capped: see `kernel.wire`), to the
session's own index of it (`kernel.event_index`: what a WebSocket resume reads) and PUBLISHed on
`wa:<kind>:<session id>` (the seed's channels), in one write. Events go out in the order they were
published, each once; each carries (producer, seq) so that a reader drops the copy of an event re-sent
after a reply was lost.

While Redis is unreachable, `publish` returns at once and the event waits in an ordered outbox; a probe
retries every `retry_s`, and once Redis answers the outbox is sent in order (new events queue behind it).
`status` and `qr` keep only their latest in the outbox (a reader needs the current one, and a QR is stale
once the status leaves `qr_ready`). The outbox holds at most `outbox_max` events (default 10 000: about
10 MB at worst, an hour of a busy number's messages); past that the oldest are dropped, counted, and the
count is logged when the outbox drains.

The outbox is durable when the bus is given one (`open_outbox`, a spool-format file next to the session's
spool, opened by `restore`): an event queued there is on disk before `publish` returns, so a frame whose
write the journal applied is spooled before the journal forgets that write, and a process recycled or
killed while Redis is away leaves its outbox to the next one, which sends it first, in order. Each event
keeps the (producer, seq) it was given: what the earlier process sent before it died is sent again under
the same identity and readers drop the copy, so each reaches a client once. The outbox file is emptied
once everything in it is sent; a `qr` from an earlier process is not sent (its code died with it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.plain_json import from_plain, to_plain
from actors.publisher import LoggedEvent, Publisher
from actors.spool import Codec, Spool, SpoolFull
from actors.tasks import TaskGroup
from kernel.event_index import session_index
from kernel.wire import EVENTS_RETAINED, EVENTS_STREAM, channel, event_fields

log = logging.getLogger(__name__)

OUTBOX_MAX = 10_000
# The outbox file's bound: when stale and dropped events fill it, it is rewritten with what is queued.
OUTBOX_MAX_BYTES = 64 * 1024 * 1024
FLUSH_BATCH = 200
# Kinds of which only the latest matters.
_LATEST_KINDS = ("status", "qr")


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str
    body: str
    producer: str
    seq: int


OUTBOX = Codec(
    lambda event: json.dumps(to_plain(event), separators=(",", ":")).encode(),
    lambda body: from_plain(_Event, json.loads(body)),
)


class EventBus:
    def __init__(
        self,
        redis_url: str,
        session_id: str,
        *,
        retry_s: float = 1.0,
        timeout_s: float = 0.5,
        outbox_max: int = OUTBOX_MAX,
        retained: int = EVENTS_RETAINED,
        open_outbox: Callable[[], Spool] | None = None,
    ) -> None:
        self._session_id = session_id
        self._retry_s = retry_s
        self._outbox_max = outbox_max
        self._retained = retained
        self._redis = Publisher(redis_url, timeout_s=timeout_s)
        self._producer = secrets.token_hex(6)  # this process: seqs restart with it
        self._seq = itertools.count(1)
        self._lock = asyncio.Lock()  # one event at a time: the order of publish() is the order sent
        self._outbox: deque[_Event] = deque()
        self._open_outbox = open_outbox
        self._file: Spool | None = None  # the outbox on disk, once `restore` opened it
        self._down = False
        self._tasks = TaskGroup(f"bus {session_id}")
        self.published = 0
        self.dropped = 0

    @property
    def up(self) -> bool:
        return not self._down

    @property
    def waiting(self) -> int:
        """Events in the outbox."""
        return len(self._outbox)

    def restore(self) -> None:
        """Open the durable outbox and queue what an earlier process left in it (sent first, in order).

        Raises what opening it raises (`PrivateFilesRefused`, `SpoolUnreadable`); idempotent.
        """
        if self._open_outbox is None or self._file is not None:
            return
        self._file = self._open_outbox()
        left = [event for _, event in self._file.head(sys.maxsize) if event is not None]
        for event in left:
            if event.kind != "qr":
                self._queue(event)
        if self._outbox:
            log.info(
                "session %s: %d events left unsent by an earlier process", self._session_id, self.waiting
            )
            self._down = True  # new events queue behind them until the probe has sent them
            self._tasks.spawn(self._recover(), "redis probe")
        else:
            self._file.clear()

    async def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Send the event now, or queue it behind the outbox while Redis is down; never raises."""
        await self.publish_all([(kind, payload)])

    async def publish_all(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """`publish` each (kind, payload), in order, in one write to Redis; never raises.

        On a failure all of them are kept: those Redis had applied go out again, and readers drop the
        copies by their (producer, seq)."""
        made = [
            _Event(kind, json.dumps(payload, separators=(",", ":")), self._producer, next(self._seq))
            for kind, payload in events
        ]
        async with self._lock:
            if self._down:
                for event in made:
                    self._keep(event)
                return
            try:
                await self._send(made)
            except OSError as err:
                for event in made:
                    self._keep(event)
                self._went_down(err)

    def _keep(self, event: _Event) -> None:
        """Queue `event`, on disk too when the outbox is durable."""
        self._queue(event)
        if self._file is None:
            return
        try:
            try:
                self._file.append(event)
            except SpoolFull:  # stale and dropped events fill the file: keep only what is queued
                self._file.rewrite(self._outbox)
        except (SpoolFull, OSError) as err:
            log.error("session %s: the outbox is not on disk (%s); kept in memory", self._session_id, err)

    def _queue(self, event: _Event) -> None:
        stale = {event.kind} if event.kind in _LATEST_KINDS else set()
        if event.kind == "status" and json.loads(event.body).get("status") != "qr_ready":
            stale.add("qr")
        if stale:
            self._outbox = deque(e for e in self._outbox if e.kind not in stale)
        self._outbox.append(event)
        if len(self._outbox) > self._outbox_max:
            self._outbox.popleft()
            if not self.dropped:
                log.warning(
                    "session %s: Redis outbox full (%d events); dropping the oldest",
                    self._session_id,
                    self._outbox_max,
                )
            self.dropped += 1

    async def _send(self, events: list[_Event]) -> None:
        await self._redis.publish_logged(
            EVENTS_STREAM,
            self._retained,
            [
                LoggedEvent(
                    channel(e.kind, self._session_id),
                    e.body,
                    event_fields(self._session_id, e.kind, e.body, e.producer, e.seq),
                    session_index(self._session_id),
                )
                for e in events
            ],
        )
        self.published += len(events)

    def _went_down(self, err: BaseException) -> None:
        self._down = True
        log.warning("session %s: Redis unreachable (%s); events wait in the outbox", self._session_id, err)
        self._tasks.spawn(self._recover(), "redis probe")

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self._retry_s)
            try:
                await self._redis.ping()
            except OSError:
                continue
            if await self._flush():
                return

    async def _flush(self) -> bool:
        """Send the outbox in order, a batch per write; True once it is empty (publishing goes direct)."""
        while True:
            async with self._lock:
                batch = list(itertools.islice(self._outbox, FLUSH_BATCH))
                if not batch:
                    self._down = False
                    if self._file is not None:
                        self._file.clear()
                    log.info(
                        "session %s: Redis is back; outbox sent (%d dropped while it was full)",
                        self._session_id,
                        self.dropped,
                    )
                    self.dropped = 0
                    return True
                try:
                    await self._send(batch)
                except OSError as err:
                    log.debug("session %s: Redis lost again sending the outbox: %s", self._session_id, err)
                    return False
                for _ in batch:
                    self._outbox.popleft()

    async def close(self) -> None:
        await self._tasks.cancel_all()
        if self._outbox:
            kept = "kept on disk for the next process" if self._file is not None else "lost"
            log.warning(
                "session %s: closing with %d unsent events (%s)", self._session_id, self.waiting, kept
            )
        if self._file is not None:
            self._file.close()
        try:
            await self._redis.aclose()
        except OSError:
            log.debug("session %s: error closing the Redis client", self._session_id)
