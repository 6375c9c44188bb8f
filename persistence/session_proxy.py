"""A number's proxy in PostgreSQL: its URL without the password on the session's row (every read shows
it), the password apart in `session_proxy_secret` (only the session's own store reads it, to dial)."""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from kernel.domain import PROXY_REASONS
from kernel.errors import SessionNotFound
from kernel.proxy import ProxySettings, stored_proxy
from persistence import models

log = logging.getLogger(__name__)

_TABLES = SQLModel.metadata.tables
_PROXY_REASONS = [reason.value for reason in PROXY_REASONS]
SESSION = _TABLES[models.WhatsAppSession.__tablename__]
SECRET = _TABLES[models.SessionProxySecret.__tablename__]


async def write_proxy(db: AsyncSession, session_id: uuid.UUID, proxy: ProxySettings | None) -> bool:
    """Set (or with None remove) the session's proxy in the caller's transaction; False if no such
    session. The failed-dial count starts again: the next dial is through the new proxy, at once."""
    updated = (
        await db.execute(
            sa.update(SESSION)
            .where(SESSION.c.id == session_id)
            .values(
                proxy_url=proxy.public if proxy else None,
                connect_failures=0,
                # The old proxy's failure is not the new one's: the next dial says how it goes.
                reason=sa.case((SESSION.c.reason.in_(_PROXY_REASONS), None), else_=SESSION.c.reason),
                updated_at=sa.func.now(),
            )
            .returning(SESSION.c.id)
        )
    ).one_or_none()
    if updated is None:
        return False
    if proxy is None or proxy.password is None:
        await db.execute(sa.delete(SECRET).where(SECRET.c.session_id == session_id))
    else:
        upsert = pg_insert(SECRET).values(session_id=session_id, password=proxy.password)
        await db.execute(
            upsert.on_conflict_do_update(
                index_elements=[SECRET.c.session_id], set_={"password": proxy.password}
            )
        )
    return True


async def set_proxy(db: AsyncSession, user_id: str, session_id: str, proxy: ProxySettings | None) -> bool:
    """Change the proxy of the user's session; whether it changed (the same again changes nothing).
    SessionNotFound if the session is not theirs."""
    try:
        sid = uuid.UUID(session_id)
    except (ValueError, TypeError) as err:
        raise SessionNotFound() from err
    try:
        row = (
            await db.execute(
                sa.select(SESSION.c.user_id, SESSION.c.proxy_url, SECRET.c.password)
                .select_from(SESSION.outerjoin(SECRET, SECRET.c.session_id == SESSION.c.id))
                .where(SESSION.c.id == sid)
                .with_for_update(of=SESSION)
            )
        ).one_or_none()
        if row is None or row.user_id != user_id:
            raise SessionNotFound()
        if stored_proxy(row.proxy_url, row.password) == proxy:
            await db.rollback()
            return False
        await write_proxy(db, sid, proxy)
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    log.info("session %s: proxy %s", session_id, "set" if proxy else "removed")
    return True
