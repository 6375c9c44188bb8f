"""The webhook routes' queries: register, list and delete a user's webhooks, page through deliveries."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import SessionNotFound
from kernel.event_frames import parse_cursor
from kernel.webhooks import WebhookNotFound, WebhookStats


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    id: str
    url: str
    events: list[str] | None
    session_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    event_id: str
    type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None


def _webhook(row: Any) -> StoredWebhook:
    sid = str(row.session_id) if row.session_id is not None else None
    return StoredWebhook(str(row.id), row.url, row.events, sid, row.created_at)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def create(
    db: AsyncSession, user_id: str, url: str, events: list[str] | None, session_id: str | None, secret: str
) -> StoredWebhook:
    """A new webhook; SessionNotFound when `session_id` is not one of the user's sessions."""
    sid = None
    if session_id is not None:
        sid = _uuid(session_id)
        owner = None
        if sid is not None:
            owner = await db.scalar(
                sa.text("SELECT user_id FROM whatsapp_session WHERE id = :id"), {"id": sid}
            )
        if owner != user_id:
            raise SessionNotFound()
    row = (
        await db.execute(
            sa.text(
                "INSERT INTO webhook (id, user_id, url, events, session_id, secret)"
                " VALUES (:id, :user, :url, CAST(:events AS jsonb), :sid, :secret)"
                " RETURNING id, url, events, session_id, created_at"
            ),
            {
                "id": uuid.uuid4(),
                "user": user_id,
                "url": url,
                "events": None if events is None else _json(events),
                "sid": sid,
                "secret": secret,
            },
        )
    ).one()
    await db.commit()
    return _webhook(row)


def _json(values: list[str]) -> str:
    return json.dumps(values)


async def list_for(db: AsyncSession, user_id: str) -> list[StoredWebhook]:
    rows = await db.execute(
        sa.text(
            "SELECT id, url, events, session_id, created_at FROM webhook WHERE user_id = :user"
            " ORDER BY created_at, id"
        ),
        {"user": user_id},
    )
    return [_webhook(r) for r in rows]


async def delete(db: AsyncSession, user_id: str, webhook_id: str) -> None:
    """Delete the webhook and its deliveries; WebhookNotFound for a missing or foreign one."""
    wid = _uuid(webhook_id)
    if wid is None:
        raise WebhookNotFound()
    found = await db.execute(
        sa.text("DELETE FROM webhook WHERE id = :id AND user_id = :user RETURNING id"),
        {"id": wid, "user": user_id},
    )
    if found.first() is None:
        raise WebhookNotFound()
    await db.commit()


async def deliveries(
    db: AsyncSession, user_id: str, webhook_id: str, limit: int, cursor: str | None
) -> tuple[list[DeliveryRow], str | None]:
    """The webhook's deliveries, newest event first, after `cursor` (an event id); and the next cursor."""
    wid = _uuid(webhook_id)
    owner = None
    if wid is not None:
        owner = await db.scalar(sa.text("SELECT user_id FROM webhook WHERE id = :id"), {"id": wid})
    if owner != user_id:
        raise WebhookNotFound()
    before = parse_cursor(cursor) if cursor else None
    params: dict[str, Any] = {"id": wid, "limit": limit + 1}
    where = "webhook_id = :id"
    if before is not None:
        where += " AND (event_ms, event_seq) < (:ms, :seq)"
        params.update(ms=before[0], seq=before[1])
    rows = list(
        await db.execute(
            sa.text(
                "SELECT event_id, type, state, attempts, last_status, last_error, next_attempt_at"
                f" FROM webhook_delivery WHERE {where} ORDER BY event_ms DESC, event_seq DESC LIMIT :limit"
            ),
            params,
        )
    )
    items = [
        DeliveryRow(
            r.event_id,
            r.type,
            r.state,
            r.attempts,
            r.last_status,
            r.last_error,
            r.next_attempt_at if r.state == "pending" else None,
        )
        for r in rows[:limit]
    ]
    next_cursor = items[-1].event_id if len(rows) > limit else None
    return items, next_cursor


async def stats(db: AsyncSession) -> WebhookStats:
    """Deliveries by state (as kept: see WEBHOOK_RETENTION_DAYS), retries made, the oldest pending's age."""
    row = (
        await db.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE state = 'delivered') AS delivered,"
                " count(*) FILTER (WHERE state = 'failed') AS failed,"
                " count(*) FILTER (WHERE state = 'pending') AS pending,"
                " coalesce(sum(greatest(attempts - 1, 0)) FILTER (WHERE state <> 'pending'), 0)"
                " + coalesce(sum(attempts) FILTER (WHERE state = 'pending'), 0) AS retries,"
                " coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending')), 0)"
                " AS oldest FROM webhook_delivery"
            )
        )
    ).one()
    return WebhookStats(
        int(row.delivered), int(row.failed), int(row.pending), int(row.retries), float(row.oldest)
    )
