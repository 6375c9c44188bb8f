"""Reads of a session's chats, messages and pictures: one implementation for the session and the API.

Each function takes an asyncpg connection and the session's id: the session process passes its store's
one connection (`persistence.inbox_store`), the API the connection under its SQLAlchemy session
(`persistence.reads`). Import-light like `persistence.session_store` (the stdlib, `kernel.domain`,
`kernel.errors`, `persistence.rows`): every session process imports it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from kernel.domain import Chat, Message, Page
from kernel.errors import ChatNotFound, InvalidInput, MessageNotFound
from kernel.stored import StoredPicture
from persistence.rows import (
    MESSAGE_COLUMNS,
    chat_from_row,
    check_limit,
    decode_cursor,
    encode_cursor,
    message_from_row,
    utc,
)

R = TypeVar("R", Chat, Message)

CHAT_SELECT = (
    "SELECT c.id, c.name, c.is_group, c.unread_count, c.last_message_at,"
    " c.picture_id, c.picture_url, c.picture_checked_at, "
    + ", ".join(f"m.{name} AS m_{name}" for name in MESSAGE_COLUMNS)
    + " FROM chat c LEFT JOIN message m"
    " ON m.session_id = c.session_id AND m.chat_id = c.id AND m.id = c.last_message_id"
)


@dataclass(frozen=True, slots=True)
class CachedPicture:
    """A picture's bytes as last downloaded; `key` is what they are the bytes of (`actors.pictures`)."""

    key: str
    mimetype: str
    data: bytes


def _page(kind: str, items: list[R], limit: int) -> Page[R]:
    """The first `limit` of `items` (fetched one more than a page), and the cursor after them if more."""
    if len(items) <= limit:
        return Page(items=tuple(items), next_cursor=None)
    last = items[limit - 1]
    return Page(items=tuple(items[:limit]), next_cursor=encode_cursor(kind, last.timestamp, last.id))


async def chat_page(conn: Any, sid: uuid.UUID, limit: int, cursor: str | None) -> Page[Chat]:
    """Chats, most recent first (chats without messages last), `limit` per page."""
    check_limit(limit)
    args: list[Any] = [sid, limit + 1]
    where = "c.session_id = $1"
    if cursor is not None:
        ts, key = decode_cursor("chats", cursor)
        if ts is None:
            args.append(key)
            where += " AND c.last_message_at IS NULL AND c.id < $3"
        else:
            args += [ts, key]
            where += (
                " AND (c.last_message_at < $3 OR (c.last_message_at = $3 AND c.id < $4)"
                " OR c.last_message_at IS NULL)"
            )
    sql = f"{CHAT_SELECT} WHERE {where} ORDER BY c.last_message_at DESC NULLS LAST, c.id DESC LIMIT $2"
    return _page("chats", [chat_from_row(row) for row in await conn.fetch(sql, *args)], limit)


async def message_page(
    conn: Any, sid: uuid.UUID, chat_id: str, limit: int, cursor: str | None
) -> Page[Message]:
    """A chat's messages, newest first, `limit` per page."""
    check_limit(limit)
    args: list[Any] = [sid, chat_id, limit + 1]
    where = "session_id = $1 AND chat_id = $2"
    if cursor is not None:
        ts, key = decode_cursor("messages", cursor)
        if ts is None:
            raise InvalidInput("Malformed cursor")
        args += [ts, key]
        where += " AND (ts, id) < ($4, $5)"
    sql = f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM message WHERE {where} ORDER BY ts DESC, id DESC LIMIT $3"
    return _page("messages", [message_from_row(row) for row in await conn.fetch(sql, *args)], limit)


async def one_message(conn: Any, sid: uuid.UUID, chat_id: str, message_id: str) -> Message:
    """One message; MessageNotFound if this session has no such message in that chat."""
    row = await conn.fetchrow(
        f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM message"
        " WHERE session_id = $1 AND chat_id = $2 AND id = $3",
        sid,
        chat_id,
        message_id,
    )
    if row is None:
        raise MessageNotFound(chat_id=chat_id, message_id=message_id)
    return message_from_row(row)


async def chat_of(conn: Any, sid: uuid.UUID, jid: str) -> str:
    """The chat as the store keys it: a LID linked to a phone number is that number's chat."""
    pn = await conn.fetchval("SELECT pn FROM identity_link WHERE session_id = $1 AND lid = $2", sid, jid)
    return str(pn) if pn is not None else jid


async def stored_picture(conn: Any, sid: uuid.UUID, chat_id: str) -> StoredPicture:
    """A chat's picture as last fetched; ChatNotFound for a chat this session does not have."""
    row = await conn.fetchrow(
        "SELECT picture_id, picture_url, picture_checked_at FROM chat WHERE session_id = $1 AND id = $2",
        sid,
        chat_id,
    )
    if row is None:
        raise ChatNotFound(chat_id=chat_id)
    checked = row["picture_checked_at"]
    return StoredPicture(row["picture_id"], row["picture_url"], utc(checked) if checked else None)


async def cached_picture(conn: Any, sid: uuid.UUID, chat_id: str) -> CachedPicture | None:
    """The bytes last downloaded of a chat's (or our own) picture, if any."""
    row = await conn.fetchrow(
        "SELECT picture_key, mimetype, data FROM picture_cache WHERE session_id = $1 AND chat_id = $2",
        sid,
        chat_id,
    )
    if row is None:
        return None
    return CachedPicture(row["picture_key"], row["mimetype"], bytes(row["data"]))
