"""Users' own API keys (`user_api_key`): rows hold a keyed hash, never a key (`api.user_keys` makes both).

Revoking deletes the row: every API process looks the key up on each request, so the next request with
it is refused wherever it lands. `last_used_at` is written at most once per `TOUCH_EVERY_S` per key, so a
busy key costs one small UPDATE a minute, not one per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from persistence import models

KEY = SQLModel.metadata.tables[models.UserApiKey.__tablename__]
TOUCH_EVERY_S = 60.0
MAX_KEYS_PER_USER = 100


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key as listed: no hash, no key."""

    id: str
    user_id: str
    name: str | None
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What checking a presented key needs: whose it is, its hash, and when it was last noted in use."""

    user_id: str
    key_hash: bytes
    last_used_at: datetime | None


def _stored(row: Any) -> StoredKey:
    return StoredKey(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


async def create_key(
    db: AsyncSession, key_id: str, user_id: str, name: str | None, key_hash: bytes
) -> StoredKey | None:
    """Store a new key's hash; None when the user already has MAX_KEYS_PER_USER keys."""
    try:
        count = (
            await db.execute(sa.select(sa.func.count()).select_from(KEY).where(KEY.c.user_id == user_id))
        ).scalar_one()
        if count >= MAX_KEYS_PER_USER:
            return None
        row = (
            await db.execute(
                sa.insert(KEY)
                .values(id=key_id, user_id=user_id, name=name, key_hash=key_hash)
                .returning(KEY.c.id, KEY.c.user_id, KEY.c.name, KEY.c.created_at, KEY.c.last_used_at)
            )
        ).one()
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return _stored(row)


async def list_keys(db: AsyncSession, user_id: str) -> list[StoredKey]:
    """The user's keys, oldest first."""
    rows = await db.execute(
        sa.select(KEY.c.id, KEY.c.user_id, KEY.c.name, KEY.c.created_at, KEY.c.last_used_at)
        .where(KEY.c.user_id == user_id)
        .order_by(KEY.c.created_at, KEY.c.id)
    )
    return [_stored(row) for row in rows]


async def delete_key(db: AsyncSession, user_id: str, key_id: str) -> bool:
    """Revoke one of the user's keys; False when the user has no such key."""
    try:
        result = await db.execute(sa.delete(KEY).where(KEY.c.id == key_id, KEY.c.user_id == user_id))
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return bool(getattr(result, "rowcount", 0))


async def find_key(db: AsyncSession, key_id: str) -> KeyCheck | None:
    """The key with this id, to check a presented secret against; None if there is none (or revoked)."""
    row = (
        await db.execute(
            sa.select(KEY.c.user_id, KEY.c.key_hash, KEY.c.last_used_at).where(KEY.c.id == key_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return KeyCheck(user_id=row.user_id, key_hash=bytes(row.key_hash), last_used_at=row.last_used_at)


def due_for_touch(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a use at `now` should be written (the last one written is older than TOUCH_EVERY_S)."""
    return last_used_at is None or now - last_used_at >= timedelta(seconds=TOUCH_EVERY_S)


async def touch_key(db: AsyncSession, key_id: str) -> None:
    """Note a use now, unless another request (of any API process) noted one within TOUCH_EVERY_S."""
    recent = sa.func.now() - sa.text(f"interval '{int(TOUCH_EVERY_S)} seconds'")
    try:
        await db.execute(
            sa.update(KEY)
            .where(KEY.c.id == key_id)
            .where(sa.or_(KEY.c.last_used_at.is_(None), KEY.c.last_used_at < recent))
            .values(last_used_at=sa.func.now())
        )
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
