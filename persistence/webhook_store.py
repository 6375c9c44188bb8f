"""What a webhook dispatcher (`actors.webhook_dispatcher`) reads and writes, over a small asyncpg pool of
its own (one round trip per call: no pre-ping, no ORM; the dispatcher's CPU per delivery is mostly this).

Recording is one statement per batch of log entries: it inserts a delivery for every webhook the entry's
session's owner has that wants it (its session, its types, created before the event) and moves the
partition's cursor in the same transaction, so an entry is recorded for every webhook exactly once,
whatever crashes or outages come between.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from kernel.settings import asyncpg_dsn
from kernel.webhooks import DueDelivery, LoggedEvent

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0

_RECORD = """
    INSERT INTO webhook_delivery (webhook_id, event_id, event_ms, event_seq, session_id, type, body, state)
    SELECT w.id, e.event_id, e.ms, e.seq, s.id, e.type, e.body, 'pending'
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])
         AS e(event_id, ms, seq, session_id, type, body)
    JOIN whatsapp_session s ON s.id::text = e.session_id
    JOIN webhook w ON w.user_id = s.user_id
         AND (w.session_id IS NULL OR w.session_id = s.id)
         AND (w.events IS NULL OR w.events ? e.type)
         AND e.ms >= floor(extract(epoch FROM w.created_at) * 1000)
    ON CONFLICT DO NOTHING
    RETURNING webhook_id, session_id
"""
_MOVE = (
    "INSERT INTO webhook_cursor (partition, cursor) VALUES ($1, $2)"
    " ON CONFLICT (partition) DO UPDATE SET cursor = excluded.cursor, updated_at = now()"
)
_HEADS = """
    SELECT webhook_id, session_id FROM (
        SELECT DISTINCT ON (webhook_id, session_id) webhook_id, session_id, next_attempt_at
        FROM webhook_delivery WHERE state = 'pending'
        ORDER BY webhook_id, session_id, event_ms, event_seq
    ) AS heads WHERE next_attempt_at <= now()
"""
_QUEUE = """
    SELECT d.webhook_id, d.event_id, d.session_id, w.url, w.secret, d.body, d.attempts,
           d.next_attempt_at, d.created_at
    FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id
    WHERE d.webhook_id = $1 AND d.session_id = $2 AND d.state = 'pending'
    ORDER BY d.event_ms, d.event_seq LIMIT $3
"""
_SETTLE = (
    "UPDATE webhook_delivery SET state = $1, attempts = attempts + 1, last_status = $2,"
    " last_error = $3, next_attempt_at = coalesce($4, next_attempt_at), updated_at = now()"
    " WHERE webhook_id = $5 AND event_id = $6 AND state = 'pending'"
)
_DELIVERED = (
    "UPDATE webhook_delivery d SET state = 'delivered', attempts = d.attempts + 1, last_status = x.status,"
    " last_error = NULL, updated_at = now()"
    " FROM unnest($2::text[], $3::int[]) AS x(event_id, status)"
    " WHERE d.webhook_id = $1 AND d.event_id = x.event_id AND d.state = 'pending'"
)
_PURGE = (
    "DELETE FROM webhook_delivery WHERE ctid IN (SELECT ctid FROM webhook_delivery"
    " WHERE state <> 'pending' AND updated_at < now() - make_interval(days => $1) LIMIT 5000)"
)


class _Connection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped here
    """No reset query on release (asyncpg >= 0.30): these statements leave no session state (no LISTEN,
    advisory lock, SET or cursor; transactions end in their block), and the reset was a round trip per
    call, as many as the work itself."""

    def get_reset_query(self) -> str:
        return ""


class WebhookStore:
    def __init__(self, database_dsn: str) -> None:
        self._dsn = asyncpg_dsn(database_dsn)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _connections(self) -> asyncpg.Pool:
        """The pool, opened on first use (and again after an open that failed: the database away)."""
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=8,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=COMMAND_TIMEOUT_S,
                    server_settings={"application_name": "webhooks"},
                    connection_class=_Connection,
                )
            return self._pool

    async def cursor(self, partition: str) -> str | None:
        pool = await self._connections()
        found: str | None = await pool.fetchval(
            "SELECT cursor FROM webhook_cursor WHERE partition = $1", partition
        )
        return found

    async def record(
        self, partition: str, events: Sequence[LoggedEvent], cursor: str
    ) -> list[tuple[str, str]]:
        """Record the deliveries of `events` and move the partition's cursor to `cursor`, atomically; the
        (webhook, session) queue of each delivery recorded."""
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            rows = []
            if events:
                rows = await conn.fetch(
                    _RECORD,
                    [e.event_id for e in events],
                    [e.ms for e in events],
                    [e.seq for e in events],
                    [e.session_id for e in events],
                    [e.type for e in events],
                    [e.body for e in events],
                )
            await conn.execute(_MOVE, partition, cursor)
        return [(str(r["webhook_id"]), str(r["session_id"])) for r in rows]

    async def heads(self) -> list[tuple[str, str]]:
        """The (webhook, session) queues whose first pending delivery is due."""
        pool = await self._connections()
        return [(str(r["webhook_id"]), str(r["session_id"])) for r in await pool.fetch(_HEADS)]

    async def queue(self, webhook_id: str, session_id: str, limit: int) -> list[DueDelivery]:
        """The first `limit` pending deliveries of one queue, in event order."""
        pool = await self._connections()
        rows = await pool.fetch(_QUEUE, uuid.UUID(webhook_id), uuid.UUID(session_id), limit)
        return [
            DueDelivery(
                str(r["webhook_id"]),
                r["event_id"],
                str(r["session_id"]),
                r["url"],
                r["secret"],
                r["body"],
                r["attempts"],
                r["next_attempt_at"],
                r["created_at"],
            )
            for r in rows
        ]

    async def settle(
        self,
        delivery: DueDelivery,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record an attempt: `delivered`, `failed`, or still `pending` until `next_attempt_at`."""
        pool = await self._connections()
        await pool.execute(
            _SETTLE,
            state,
            status,
            error,
            next_attempt_at,
            uuid.UUID(delivery.webhook_id),
            delivery.event_id,
        )

    async def delivered(self, webhook_id: str, answered: Sequence[tuple[str, int]]) -> None:
        """Record the 2xx answers (event id, status) of one webhook's deliveries, in one write."""
        pool = await self._connections()
        await pool.execute(
            _DELIVERED,
            uuid.UUID(webhook_id),
            [event_id for event_id, _ in answered],
            [status for _, status in answered],
        )

    async def purge(self, days: int) -> int:
        """Delete delivered and failed deliveries last touched more than `days` ago (one batch)."""
        pool = await self._connections()
        result: str = await pool.execute(_PURGE, days)
        return int(result.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
