"""The API's queries (SQLAlchemy async). Every function takes an `AsyncSession` and returns domain values.

Write functions commit on success and roll back when they raise; constraint violations become the
domain errors of `kernel.errors`. A session id that is not a UUID is simply not found.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from kernel.domain import Chat, Reason, SessionStatus, SessionView
from kernel.errors import (
    InvalidInput,
    InvalidPhone,
    InvalidSlot,
    MaxSessionsReached,
    PhoneAlreadyPaired,
    SessionNotFound,
    SlotTaken,
)
from kernel.proxy import ProxySettings
from kernel.stored import SessionToRun
from persistence import models
from persistence.reads import driver_connection
from persistence.reads import list_sessions as list_sessions  # the user's sessions, with `live`
from persistence.session_proxy import write_proxy
from persistence.session_store import MAX_PAGE, MESSAGE_COLUMNS, chat_from_row, session_view_from_row
from persistence.sim_network import forget_session

log = logging.getLogger(__name__)

_TABLES = SQLModel.metadata.tables
SESSION = _TABLES[models.WhatsAppSession.__tablename__]
USER = _TABLES[models.AppUser.__tablename__]
CHAT = _TABLES[models.Chat.__tablename__]
MESSAGE = _TABLES[models.Message.__tablename__]

# Namespace (first key) of the per-user advisory lock that serialises slot allocation.
_SLOT_LOCK_NS = 0x534C4F54
_UNIQUE_ERRORS = {"uq_session_user_slot": SlotTaken, "uq_session_phone": PhoneAlreadyPaired}


@dataclass(frozen=True, slots=True)
class UserView:
    """A web inbox user (the contract's `/users/me`)."""

    id: str
    whatsapp_phone: str | None


@dataclass(frozen=True, slots=True)
class InboxChat:
    """A chat of one of the user's numbers, for the merged inbox."""

    session_id: str
    chat: Chat


@dataclass(frozen=True, slots=True)
class SessionCounts:
    total: int
    connected: int


def _uuid(session_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(session_id)
    except (ValueError, TypeError, AttributeError) as err:
        raise SessionNotFound() from err


def _violated(err: IntegrityError) -> str | None:
    """The name of the constraint an IntegrityError broke (asyncpg reports it on the cause)."""
    for candidate in (err.orig, getattr(err.orig, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if name:
            return str(name)
    return None


@asynccontextmanager
async def _writing(db: AsyncSession) -> AsyncIterator[None]:
    """Commit what the block wrote, or roll back and translate unique violations."""
    try:
        yield
        await db.commit()
    except IntegrityError as err:
        await db.rollback()
        error = _UNIQUE_ERRORS.get(_violated(err) or "")
        if error is None:
            raise
        raise error() from err
    except BaseException:
        await db.rollback()
        raise


def normalize_phone(value: str) -> str:
    """E.164 (`+14155552671`) from what a user typed (`+1 (415) 555-2671`); InvalidPhone otherwise."""
    text = value.strip()
    if text and text[0].isdigit():
        text = "+" + text
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as err:
        raise InvalidPhone(f"{value!r} is not a phone number") from err
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- sessions ----------------------------------------------------------------------------------------------


async def create_session(
    db: AsyncSession,
    user_id: str,
    slot: int | None,
    max_sessions: int,
    *,
    session_id: str | None = None,
    proxy: ProxySettings | None = None,
) -> SessionView:
    """A new disconnected session in `slot`, or the lowest free slot when None.

    Checked in this order: InvalidSlot (outside 1..max_sessions), MaxSessionsReached (the user already
    has max_sessions numbers), SlotTaken. A per-user advisory lock serialises concurrent creates, so two
    requests racing for the last free slot cannot both succeed.
    """
    if slot is not None and not 1 <= slot <= max_sessions:
        raise InvalidSlot(f"slot must be between 1 and {max_sessions}", slot=slot)
    new_id = uuid.UUID(session_id) if session_id else uuid.uuid4()
    async with _writing(db):
        await db.execute(
            sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:user_id))"),
            {"ns": _SLOT_LOCK_NS, "user_id": user_id},
        )
        taken = set(
            (await db.execute(sa.select(SESSION.c.slot).where(SESSION.c.user_id == user_id))).scalars()
        )
        if len(taken) >= max_sessions:
            raise MaxSessionsReached(max_sessions=max_sessions)
        if slot is None:
            slot = min(set(range(1, max_sessions + 1)) - taken)
        elif slot in taken:
            raise SlotTaken(slot=slot)
        row = (
            await db.execute(
                sa.insert(SESSION)
                .values(
                    id=new_id,
                    user_id=user_id,
                    slot=slot,
                    status=SessionStatus.DISCONNECTED.value,
                )
                .returning(*SESSION.c)
            )
        ).one()
        if proxy is not None:
            await write_proxy(db, new_id, proxy)
            row = (await db.execute(sa.select(SESSION).where(SESSION.c.id == new_id))).one()
    log.info("user %s: session %s created in slot %d", user_id, new_id, slot)
    return session_view_from_row(row._mapping)


async def delete_session(db: AsyncSession, session_id: str, *, user_id: str | None = None) -> None:
    """Delete the session (its chats and messages cascade) and any device keys it left behind.

    With `user_id`, only that user's session is deleted; SessionNotFound if nothing matched.
    """
    sid = _uuid(session_id)
    condition = SESSION.c.id == sid
    if user_id is not None:
        condition = sa.and_(condition, SESSION.c.user_id == user_id)
    async with _writing(db):
        row = (
            await db.execute(sa.delete(SESSION).where(condition).returning(SESSION.c.device_jid))
        ).one_or_none()
        if row is None:
            raise SessionNotFound()
        await forget_session(await driver_connection(db), sid)
        auth_table = f"{models.AUTH_SCHEMA}.whatsmeow_device"
        # whatsmeow creates its tables on first use; its other tables cascade from whatsmeow_device.
        if (
            row.device_jid
            and (await db.execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": auth_table})).scalar()
        ):
            await db.execute(sa.text(f"DELETE FROM {auth_table} WHERE jid = :jid"), {"jid": row.device_jid})
    log.info("session %s deleted", session_id)


async def set_session_phone(
    db: AsyncSession,
    session_id: str,
    phone: str,
    *,
    device_jid: str | None = None,
    display_name: str | None = None,
) -> SessionView:
    """Record a pairing result; PhoneAlreadyPaired if another session holds `phone`."""
    values: dict[str, Any] = {"phone": phone, "updated_at": sa.func.now()}
    if device_jid is not None:
        values["device_jid"] = device_jid
    if display_name is not None:
        values["display_name"] = display_name
    async with _writing(db):
        row = (
            await db.execute(
                sa.update(SESSION)
                .where(SESSION.c.id == _uuid(session_id))
                .values(**values)
                .returning(*SESSION.c)
            )
        ).one_or_none()
        if row is None:
            raise SessionNotFound()
    return session_view_from_row(row._mapping)


async def sessions_to_run(db: AsyncSession) -> list[SessionToRun]:
    """Every session, paired ones first, oldest first (the supervisor's reload order)."""
    rows = await db.execute(
        sa.select(
            SESSION.c.id, SESSION.c.user_id, SESSION.c.device_jid, SESSION.c.status, SESSION.c.reason
        ).order_by(SESSION.c.device_jid.is_(None), SESSION.c.created_at, SESSION.c.id)
    )
    return [
        SessionToRun(
            id=str(r.id),
            user_id=r.user_id,
            device_jid=r.device_jid,
            status=SessionStatus(r.status),
            reason=Reason(r.reason) if r.reason else None,
        )
        for r in rows
    ]


async def session_status_counts(db: AsyncSession) -> dict[str, int]:
    """How many sessions are in each status (as last recorded by their actors)."""
    rows = await db.execute(sa.select(SESSION.c.status, sa.func.count()).group_by(SESSION.c.status))
    return {str(status): int(count) for status, count in rows}


async def session_counts(db: AsyncSession) -> SessionCounts:
    """How many sessions exist and how many are connected (as last recorded)."""
    by_status = await session_status_counts(db)
    return SessionCounts(
        total=sum(by_status.values()), connected=by_status.get(SessionStatus.CONNECTED.value, 0)
    )


async def session_owner(db: AsyncSession, session_id: str) -> str | None:
    """The user id owning the session, or None when there is no such session."""
    try:
        sid = uuid.UUID(session_id)
    except (ValueError, TypeError, AttributeError):
        return None
    owner = (await db.execute(sa.select(SESSION.c.user_id).where(SESSION.c.id == sid))).scalar_one_or_none()
    return str(owner) if owner is not None else None


# --- users -------------------------------------------------------------------------------------------------


async def get_user(db: AsyncSession, user_id: str) -> UserView:
    """The user; one never seen before has no phone yet."""
    phone = (
        await db.execute(sa.select(USER.c.whatsapp_phone).where(USER.c.id == user_id))
    ).scalar_one_or_none()
    return UserView(id=user_id, whatsapp_phone=phone)


async def set_user_phone(db: AsyncSession, user_id: str, phone: str) -> UserView:
    """Store the user's own number, normalised to E.164 (InvalidPhone if it is not a number)."""
    e164 = normalize_phone(phone)
    stmt = pg_insert(USER).values(id=user_id, whatsapp_phone=e164)
    stmt = stmt.on_conflict_do_update(
        index_elements=[USER.c.id],
        set_={"whatsapp_phone": stmt.excluded.whatsapp_phone, "updated_at": sa.func.now()},
    )
    async with _writing(db):
        await db.execute(stmt)
    return UserView(id=user_id, whatsapp_phone=e164)


# --- chats and messages ------------------------------------------------------------------------------------


async def inbox_chats(
    db: AsyncSession, user_id: str, session_ids: Sequence[str] | None, limit: int
) -> list[InboxChat]:
    """The most recent chats across the user's sessions (all of them, or those in `session_ids`).

    Sessions of other users are ignored, whatever `session_ids` holds.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    owned = sa.select(SESSION.c.id).where(SESSION.c.user_id == user_id)
    if session_ids is not None:
        ids = []
        for sid in session_ids:
            try:
                ids.append(uuid.UUID(sid))
            except ValueError:
                continue
        owned = owned.where(SESSION.c.id.in_(ids))
    m = MESSAGE.alias("m")
    stmt = (
        sa.select(
            CHAT.c.session_id,
            CHAT.c.id,
            CHAT.c.name,
            CHAT.c.is_group,
            CHAT.c.unread_count,
            CHAT.c.last_message_at,
            CHAT.c.picture_id,
            CHAT.c.picture_url,
            CHAT.c.picture_checked_at,
            *(m.c[name].label(f"m_{name}") for name in MESSAGE_COLUMNS),
        )
        .select_from(
            CHAT.outerjoin(
                m,
                sa.and_(
                    m.c.session_id == CHAT.c.session_id,
                    m.c.chat_id == CHAT.c.id,
                    m.c.id == CHAT.c.last_message_id,
                ),
            )
        )
        .where(CHAT.c.session_id.in_(owned.scalar_subquery()))
        .order_by(CHAT.c.last_message_at.desc().nulls_last(), CHAT.c.session_id, CHAT.c.id.desc())
        .limit(limit)
    )
    rows = await db.execute(stmt)
    return [InboxChat(session_id=str(r.session_id), chat=chat_from_row(r._mapping)) for r in rows]


async def purge_old_messages(db: AsyncSession, days: int, *, batch: int = 5000) -> int:
    """Delete messages older than `days` (0 keeps everything), except each chat's last message.

    Keeping the last message keeps every chat's `last_message_id` pointing at a row, and the chat list
    showing a preview in the order it had (a chat's last message only ever moves to a newer one, so the
    kept one is the chat's newest). Each batch of at most `batch` rows is its own short transaction; rows
    another transaction holds (a receipt being applied) are skipped, not waited for, and go next time.
    Returns how many were deleted.
    """
    if days <= 0:
        return 0
    deleted = 0
    cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, days)
    m = MESSAGE.alias("m")
    is_last = sa.exists().where(
        CHAT.c.session_id == m.c.session_id, CHAT.c.id == m.c.chat_id, CHAT.c.last_message_id == m.c.id
    )
    victims = (
        sa.select(m.c.session_id, m.c.chat_id, m.c.id)
        .where(m.c.ts < cutoff, ~is_last)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    stmt = sa.delete(MESSAGE).where(
        sa.tuple_(MESSAGE.c.session_id, MESSAGE.c.chat_id, MESSAGE.c.id).in_(victims)
    )
    while True:
        async with _writing(db):
            count = cast("CursorResult[Any]", await db.execute(stmt)).rowcount
        deleted += count
        if count < batch:
            break
    if deleted:
        log.info("retention: deleted %d messages older than %d days", deleted, days)
    return deleted
