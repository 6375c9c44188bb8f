"""What a webhook dispatcher (`actors.webhook_dispatcher`) reads and writes, over a small pool of its own.

Recording is one statement per batch of log entries: it inserts a delivery for every webhook the entry's
session's owner has that wants it (its session, its types, created before the event) and moves the
partition's cursor in the same transaction, so an entry is recorded for every webhook exactly once,
whatever crashes or outages come between.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from kernel.webhooks import DueDelivery, LoggedEvent
from persistence.db import create_engine, session_factory

_RECORD = sa.text(
    """
    INSERT INTO webhook_delivery (webhook_id, event_id, event_ms, event_seq, session_id, type, body, state)
    SELECT w.id, e.event_id, e.ms, e.seq, s.id, e.type, e.body, 'pending'
    FROM unnest(CAST(:ids AS text[]), CAST(:ms AS bigint[]), CAST(:seq AS bigint[]),
                CAST(:sids AS text[]), CAST(:types AS text[]), CAST(:bodies AS text[]))
         AS e(event_id, ms, seq, session_id, type, body)
    JOIN whatsapp_session s ON s.id::text = e.session_id
    JOIN webhook w ON w.user_id = s.user_id
         AND (w.session_id IS NULL OR w.session_id = s.id)
         AND (w.events IS NULL OR w.events ? e.type)
         AND e.ms >= floor(extract(epoch FROM w.created_at) * 1000)
    ON CONFLICT DO NOTHING
    RETURNING webhook_id, session_id
    """
)
_MOVE = sa.text(
    "INSERT INTO webhook_cursor (partition, cursor) VALUES (:p, :c)"
    " ON CONFLICT (partition) DO UPDATE SET cursor = excluded.cursor, updated_at = now()"
)
_HEADS = sa.text(
    """
    SELECT webhook_id, session_id, next_attempt_at FROM (
        SELECT DISTINCT ON (webhook_id, session_id) webhook_id, session_id, next_attempt_at
        FROM webhook_delivery WHERE state = 'pending'
        ORDER BY webhook_id, session_id, event_ms, event_seq
    ) AS heads WHERE next_attempt_at <= now()
    """
)
_QUEUE = sa.text(
    """
    SELECT d.webhook_id, d.event_id, d.session_id, w.url, w.secret, d.body, d.attempts,
           d.next_attempt_at, d.created_at
    FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id
    WHERE d.webhook_id = :w AND d.session_id = :s AND d.state = 'pending'
    ORDER BY d.event_ms, d.event_seq LIMIT :limit
    """
)
_SETTLE = sa.text(
    "UPDATE webhook_delivery SET state = :state, attempts = attempts + 1, last_status = :status,"
    " last_error = :error, next_attempt_at = coalesce(:next, next_attempt_at), updated_at = now()"
    " WHERE webhook_id = :w AND event_id = :e AND state = 'pending'"
)
_DELIVERED = sa.text(
    "UPDATE webhook_delivery d SET state = 'delivered', attempts = d.attempts + 1, last_status = x.status,"
    " last_error = NULL, updated_at = now()"
    " FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS int[])) AS x(event_id, status)"
    " WHERE d.webhook_id = :w AND d.event_id = x.event_id AND d.state = 'pending'"
)
_PURGE = sa.text(
    "DELETE FROM webhook_delivery WHERE ctid IN (SELECT ctid FROM webhook_delivery"
    " WHERE state <> 'pending' AND updated_at < now() - make_interval(days => :days) LIMIT 5000)"
)


class WebhookStore:
    def __init__(self, database_dsn: str) -> None:
        self._engine = create_engine(database_dsn, pool_size=4, max_overflow=4, application_name="webhooks")
        self._db = session_factory(self._engine)

    async def cursor(self, partition: str) -> str | None:
        async with self._db() as db:
            found: str | None = await db.scalar(
                sa.text("SELECT cursor FROM webhook_cursor WHERE partition = :p"), {"p": partition}
            )
            return found

    async def record(
        self, partition: str, events: Sequence[LoggedEvent], cursor: str
    ) -> list[tuple[str, str]]:
        """Record the deliveries of `events` and move the partition's cursor to `cursor`, atomically; the
        (webhook, session) queue of each delivery recorded."""
        async with self._db() as db:
            inserted: list[tuple[str, str]] = []
            if events:
                result = await db.execute(
                    _RECORD,
                    {
                        "ids": [e.event_id for e in events],
                        "ms": [e.ms for e in events],
                        "seq": [e.seq for e in events],
                        "sids": [e.session_id for e in events],
                        "types": [e.type for e in events],
                        "bodies": [e.body for e in events],
                    },
                )
                inserted = [(str(r.webhook_id), str(r.session_id)) for r in result]
            await db.execute(_MOVE, {"p": partition, "c": cursor})
            await db.commit()
            return inserted

    async def heads(self) -> list[tuple[str, str]]:
        """The (webhook, session) queues whose first pending delivery is due."""
        async with self._db() as db:
            rows = await db.execute(_HEADS)
            return [(str(r.webhook_id), str(r.session_id)) for r in rows]

    async def queue(self, webhook_id: str, session_id: str, limit: int) -> list[DueDelivery]:
        """The first `limit` pending deliveries of one queue, in event order."""
        async with self._db() as db:
            rows = await db.execute(
                _QUEUE, {"w": uuid.UUID(webhook_id), "s": uuid.UUID(session_id), "limit": limit}
            )
            return [
                DueDelivery(
                    str(r.webhook_id),
                    r.event_id,
                    str(r.session_id),
                    r.url,
                    r.secret,
                    r.body,
                    r.attempts,
                    r.next_attempt_at,
                    r.created_at,
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
        async with self._db() as db:
            await db.execute(
                _SETTLE,
                {
                    "state": state,
                    "status": status,
                    "error": error,
                    "next": next_attempt_at,
                    "w": uuid.UUID(delivery.webhook_id),
                    "e": delivery.event_id,
                },
            )
            await db.commit()

    async def delivered(self, webhook_id: str, answered: Sequence[tuple[str, int]]) -> None:
        """Record the 2xx answers (event id, status) of one webhook's deliveries, in one write."""
        async with self._db() as db:
            await db.execute(
                _DELIVERED,
                {
                    "w": uuid.UUID(webhook_id),
                    "ids": [event_id for event_id, _ in answered],
                    "statuses": [status for _, status in answered],
                },
            )
            await db.commit()

    async def purge(self, days: int) -> int:
        """Delete delivered and failed deliveries last touched more than `days` ago (one batch)."""
        async with self._db() as db:
            result = await db.execute(_PURGE, {"days": days})
            await db.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        await self._engine.dispose()
