"""Queries the API front end needs beyond `persistence.repo`: event routing and metrics.

Same conventions as `repo`: every function takes an `AsyncSession` and returns plain values.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.repo import SESSION


async def session_owner(db: AsyncSession, session_id: str) -> str | None:
    """The user id owning the session, or None when there is no such session."""
    try:
        sid = uuid.UUID(session_id)
    except (ValueError, TypeError, AttributeError):
        return None
    owner = (await db.execute(sa.select(SESSION.c.user_id).where(SESSION.c.id == sid))).scalar_one_or_none()
    return str(owner) if owner is not None else None


async def session_status_counts(db: AsyncSession) -> dict[str, int]:
    """How many sessions are in each status (as last recorded by their actors)."""
    rows = await db.execute(sa.select(SESSION.c.status, sa.func.count()).group_by(SESSION.c.status))
    return {str(status): int(count) for status, count in rows.tuples()}
