"""What the API reads of a session: always from PostgreSQL, whatever the session's process is doing.

Sessions come with their heartbeat (`actors.heartbeat`): `live` is true while the process's last beat
has not run out and said it holds the WhatsApp connection; the QR code and pairing code it shows come
with the status only while it beats. Chats, messages and pictures are read with the same queries the
session's own store uses (`persistence.inbox_reads`), on the asyncpg connection under the API's
SQLAlchemy session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from kernel.domain import Chat, Message, Page, SessionView
from kernel.errors import SessionNotFound
from kernel.ids import USER_SERVER, jid_user
from kernel.stored import StoredPicture
from persistence import models
from persistence.inbox_reads import (
    CachedPicture,
    cached_picture,
    chat_of,
    chat_page,
    message_page,
    stored_picture,
)
from persistence.rows import session_view_from_row

_TABLES = SQLModel.metadata.tables
SESSION = _TABLES[models.WhatsAppSession.__tablename__]
HEARTBEAT = _TABLES[models.SessionHeartbeat.__tablename__]


@dataclass(frozen=True, slots=True)
class PictureLookup:
    """What the store knows of a chat's picture: the chat as stored, its state, the bytes cached."""

    chat_id: str
    stored: StoredPicture  # our own picture: the row's `profile_pic_url` as its link, never checked
    own: bool
    cached: CachedPicture | None


def _sid(session_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(session_id)
    except (ValueError, TypeError, AttributeError) as err:
        raise SessionNotFound() from err


async def driver_connection(db: AsyncSession) -> Any:
    """The asyncpg connection under `db` (the shared queries are written for asyncpg)."""
    conn = await db.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _views(*where: Any, codes: bool) -> sa.Select[Any]:
    """Sessions joined with their heartbeat: `live`, and with `codes` the QR and pairing code shown now
    (only while the process beats: a dead process's last code is not shown)."""
    beating = HEARTBEAT.c.beat_until > sa.func.now()
    columns: list[Any] = [
        SESSION,
        sa.func.coalesce(sa.and_(beating, HEARTBEAT.c.connected), sa.false()).label("live"),
    ]
    if codes:
        columns += [
            sa.case((beating, HEARTBEAT.c.qr)).label("qr"),
            sa.case((beating, HEARTBEAT.c.qr_expires_at)).label("qr_expires_at"),
            sa.case((beating, HEARTBEAT.c.pairing_code)).label("pairing_code"),
        ]
    return (
        sa.select(*columns)
        .select_from(SESSION.outerjoin(HEARTBEAT, HEARTBEAT.c.session_id == SESSION.c.id))
        .where(*where)
        .order_by(SESSION.c.slot)
    )


async def list_sessions(db: AsyncSession, user_id: str) -> list[SessionView]:
    """The user's sessions by slot, each with `live` (no QR or pairing code: see `sessions_shown`)."""
    stmt = _views(SESSION.c.user_id == user_id, codes=False)
    return [session_view_from_row(row._mapping) for row in await db.execute(stmt)]


async def sessions_shown(db: AsyncSession, user_id: str) -> list[SessionView]:
    """The user's sessions by slot as a WebSocket shows them: with `live`, and the QR and pairing code
    each process shows now."""
    stmt = _views(SESSION.c.user_id == user_id, codes=True)
    return [session_view_from_row(row._mapping) for row in await db.execute(stmt)]


async def session_status(db: AsyncSession, user_id: str, session_id: str) -> SessionView:
    """One session of the user with `live`, and the QR and pairing code its process shows now.

    SessionNotFound for a session that is not (or no longer) the user's.
    """
    stmt = _views(SESSION.c.id == _sid(session_id), SESSION.c.user_id == user_id, codes=True)
    row = (await db.execute(stmt)).one_or_none()
    if row is None:
        raise SessionNotFound()
    return session_view_from_row(row._mapping)


async def chats(db: AsyncSession, session_id: str, limit: int, cursor: str | None) -> Page[Chat]:
    """A page of the session's chats, most recent first."""
    return await chat_page(await driver_connection(db), _sid(session_id), limit, cursor)


async def messages(
    db: AsyncSession, session_id: str, chat_id: str, limit: int, cursor: str | None
) -> Page[Message]:
    """A page of a chat's messages, newest first (a LID linked to a number reads the number's chat)."""
    conn, sid = await driver_connection(db), _sid(session_id)
    return await message_page(conn, sid, await chat_of(conn, sid, chat_id), limit, cursor)


async def picture(db: AsyncSession, session_id: str, chat_id: str) -> PictureLookup:
    """A chat's (or our own number's) picture as stored; ChatNotFound for a chat the session lacks."""
    conn, sid = await driver_connection(db), _sid(session_id)
    jid = await chat_of(conn, sid, chat_id)
    row = await conn.fetchrow("SELECT device_jid, profile_pic_url FROM whatsapp_session WHERE id = $1", sid)
    if row is None:
        raise SessionNotFound()
    device = row["device_jid"]
    own = bool(device) and jid == f"{jid_user(device)}@{USER_SERVER}"
    if own:
        stored = StoredPicture("" if row["profile_pic_url"] else None, row["profile_pic_url"], None)
    else:
        stored = await stored_picture(conn, sid, jid)
    return PictureLookup(jid, stored, own, await cached_picture(conn, sid, jid))
