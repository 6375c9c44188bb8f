"""A webhook dispatcher: records each event of its sessions for every webhook that wants it, then
delivers each (webhook, session) queue in order.

Guarantees (tests/test_webhooks_delivery.py, tests/test_webhooks_cluster.py):
- Nothing accepted is lost. The dispatcher reads the event log (`wa:events`) from its partition's cursor
  in PostgreSQL; a batch's deliveries (each with its frame) and the cursor move are one transaction. A
  crash, a restart, Redis or PostgreSQL away: it reads again from the stored cursor, and a delivery is
  recorded once per webhook (primary key). Once recorded, the event no longer needs the log.
- In order per session: each (webhook, session) queue sends its oldest pending delivery first and the
  next only once that one is delivered or `failed`. Queues run concurrently (at most
  `PER_WEBHOOK_PARALLEL` per webhook), so a slow receiver holds up only its own queues.
- At least once: a 2xx is recorded as delivered after the fact; if that write is lost the event is sent
  again with the same `webhook-id`. A failed attempt is retried after `kernel.webhooks.backoff_s` (capped
  at `backoff_max_s`, jittered) until `retry_for_s` have passed since the event; then it is `failed`.
- Sessions are split among `dispatchers` actors by a hash of their id; each reads the whole log and keeps
  its own sessions (partition `<index>/<count>`).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from actors.webhook_ports import WebhookConfig, WebhookStorePort
from actors.webhook_sender import Attempt, Sender
from kernel.event_frames import FRAME_TYPES, Duplicates, decode, frame_text, parse_cursor
from kernel.webhooks import DueDelivery, LoggedEvent, backoff_s, excerpt
from kernel.wire import EVENTS_STREAM

log = logging.getLogger(__name__)

START = "0-0"
READ_COUNT = 500
READ_BLOCK_MS = 1000
QUEUE_PAGE = 50
PER_WEBHOOK_PARALLEL = 16
BACKOFF_MAX_S = 5.0
RETENTION_EVERY_S = 3600.0
PURGE_BATCHES = 200  # of 5000 rows, per pass


def partition_of(session_id: str, count: int) -> int:
    return zlib.crc32(session_id.encode()) % count


class Dispatcher:
    """One partition's ingest and delivery loops (`run`), over a store and a sender."""

    def __init__(self, config: WebhookConfig, index: int, store: WebhookStorePort, sender: Sender) -> None:
        self._config = config
        self._index = index
        self._partition = f"{index}/{config.dispatchers}"
        self._store = store
        self._sender = sender
        self._cursor: str | None = None
        self._inflight: set[tuple[str, str]] = set()
        self._again: set[tuple[str, str]] = set()
        self._limits: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(PER_WEBHOOK_PARALLEL)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"recorded": 0, "delivered": 0, "retried": 0, "failed": 0}

    def mine(self, session_id: str) -> bool:
        return partition_of(session_id, self._config.dispatchers) == self._index

    def status(self) -> dict[str, Any]:
        return {"partition": self._partition, "cursor": self._cursor, "inflight": len(self._inflight)}

    async def run(self) -> None:
        """Both loops until cancelled; each catches its own failures and carries on."""
        jobs = [self._ingest_loop(), self._deliver_loop()]
        if self._index == 0:
            jobs.append(self._retention_loop())
        try:
            await asyncio.gather(*jobs)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ the event log into deliveries

    def _redis(self) -> Redis:
        return Redis.from_url(
            self._config.redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=READ_BLOCK_MS / 1000 + 4.0,
            retry=Retry(NoBackoff(), 0),
        )

    async def _ingest_loop(self) -> None:
        backoff = 0.25
        duplicates = Duplicates()
        while True:
            client = self._redis()
            try:
                if self._cursor is None:
                    self._cursor = await self._store.cursor(self._partition) or START
                    log.info("webhooks %s: reading the event log after %s", self._partition, self._cursor)
                await self._check_history(client)
                while True:
                    got: Any = await client.xread(
                        {EVENTS_STREAM: self._cursor}, count=READ_COUNT, block=READ_BLOCK_MS
                    )
                    entries = got[0][1] if got else []
                    if not entries:
                        continue
                    last = _text(entries[-1][0])
                    events = self._events(entries, duplicates)
                    try:
                        recorded = await self._store.record(self._partition, events, last)
                    except BaseException:
                        # Read again from the stored cursor: what these entries taught it does not count.
                        duplicates = Duplicates()
                        raise
                    self._cursor = last
                    self.counts["recorded"] += len(recorded)
                    backoff = 0.25
                    for queue in dict.fromkeys(recorded):
                        self._start(queue)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning(
                    "webhooks %s: cannot read the event log into deliveries (%s); retrying",
                    self._partition,
                    type(err).__name__,
                )
            finally:
                await _close(client)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _check_history(self, client: Redis) -> None:
        """Warn when the log no longer holds the cursor's entry: it was trimmed past it, or Redis lost its
        data; events logged meanwhile and not yet recorded are gone (what was recorded is delivered)."""
        if self._cursor is None or self._cursor == START:
            return
        found: Any = await client.xrange(EVENTS_STREAM, min=self._cursor, max=self._cursor, count=1)
        if not found:
            log.warning(
                "webhooks %s: the event log no longer holds entry %s (trimmed, or Redis lost its data);"
                " events logged since and not yet recorded may be lost",
                self._partition,
                self._cursor,
            )

    def _events(self, entries: list[tuple[Any, Any]], duplicates: Duplicates) -> list[LoggedEvent]:
        events = []
        for entry_id, fields in entries:
            try:
                entry = decode(entry_id, fields)
                frame_type = FRAME_TYPES[entry.kind]
                position = parse_cursor(entry.id)
                if position is None:
                    raise ValueError("not a stream id")
            except (ValueError, KeyError):
                log.warning("webhooks: skipping a malformed event log entry %r", entry_id)
                continue
            if not self.mine(entry.session_id) or duplicates.is_copy(entry):
                continue
            body = frame_text(frame_type, entry.session_id, entry.payload, cursor=entry.id)
            events.append(LoggedEvent(entry.id, *position, entry.session_id, frame_type, body))
        return events

    # ------------------------------------------------------------------ delivering

    async def _deliver_loop(self) -> None:
        while True:
            try:
                for queue in await self._store.heads():
                    if self.mine(queue[1]):
                        self._start(queue)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("webhooks %s: cannot read the queues (%s)", self._partition, type(err).__name__)
            # New events start their queues as they are recorded (`_ingest_loop`); this look finds the
            # retries that came due, and a queue whose new delivery landed as its sender was finishing.
            await asyncio.sleep(self._config.poll_s)

    def _start(self, queue: tuple[str, str]) -> None:
        """Send the queue's due deliveries, unless that is under way."""
        if queue in self._inflight:
            self._again.add(queue)  # its sender may have read an empty page just now: it starts again
            return
        self._inflight.add(queue)
        task = asyncio.get_running_loop().create_task(self._drain(*queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, webhook_id: str, session_id: str) -> None:
        """Send one queue's due deliveries in order until it is empty or one must wait for a retry."""
        try:
            async with self._limits[webhook_id]:
                while True:
                    due = await self._store.queue(webhook_id, session_id, QUEUE_PAGE)
                    if not due or not await self._send_page(due):
                        return
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning(
                "webhooks: queue %s/%s stopped (%s); the next pass resumes it",
                webhook_id,
                session_id,
                type(err).__name__,
            )
        finally:
            queue = (webhook_id, session_id)
            self._inflight.discard(queue)
            if queue in self._again:
                self._again.discard(queue)
                self._start(queue)

    async def _send_page(self, due: list[DueDelivery]) -> bool:
        """Send a page of one queue in order; whether the queue may go on to its next page.

        2xx answers are recorded together at the end of the page (or before a failure is): one write
        per page, not per event. A crash before that write sends them again, with the same ids.
        """
        delivered: list[tuple[str, int]] = []
        go_on = True
        try:
            for delivery in due:
                if delivery.next_attempt_at > datetime.now(UTC):
                    go_on = False
                    break
                attempt: Attempt = await self._sender.send(delivery)
                if attempt.ok:
                    delivered.append((delivery.event_id, attempt.status or 200))
                    continue
                await self._flush(due[0].webhook_id, delivered)
                if not await self._failed(delivery, attempt):
                    go_on = False
                    break
        finally:
            await self._flush(due[0].webhook_id, delivered)
        return go_on

    async def _flush(self, webhook_id: str, delivered: list[tuple[str, int]]) -> None:
        if delivered:
            await self._store.delivered(webhook_id, delivered)
            self.counts["delivered"] += len(delivered)
            delivered.clear()

    async def _failed(self, delivery: DueDelivery, attempt: Attempt) -> bool:
        """Record a failed attempt; whether the queue may go on (the delivery is `failed` for good)."""
        now = datetime.now(UTC)
        error = excerpt(attempt.error or "")
        if (now - delivery.created_at).total_seconds() >= self._config.retry_for_s:
            await self._store.settle(delivery, "failed", attempt.status, error)
            self.counts["failed"] += 1
            log.warning(
                "webhooks: event %s to webhook %s failed for good after %d attempts",
                delivery.event_id,
                delivery.webhook_id,
                delivery.attempts + 1,
            )
            return True
        delay = backoff_s(delivery.attempts + 1, self._config.backoff_max_s)
        await self._store.settle(delivery, "pending", attempt.status, error, now + timedelta(seconds=delay))
        self.counts["retried"] += 1
        return False

    async def _retention_loop(self) -> None:
        while True:
            try:
                for _ in range(PURGE_BATCHES):
                    if not await self._store.purge(self._config.retention_days):
                        break
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.info("webhooks: retention deferred (%s)", type(err).__name__)
            await asyncio.sleep(RETENTION_EVERY_S)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _close(client: Redis) -> None:
    try:
        await asyncio.wait_for(client.aclose(), 2.0)
    except Exception:
        log.debug("webhooks: closing a Redis client failed", exc_info=True)
