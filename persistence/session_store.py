"""The store a session's actor uses: its `whatsapp_session` row, chats and messages.

Import-light on purpose (every session is its own process): asyncpg, the stdlib and `actors.domain`,
`actors.errors`, `actors.events` only; no SQLAlchemy, SQLModel or pydantic. The row decoders here are
shared with `persistence.repo` so both sides read chats and messages the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import asyncpg

from actors.domain import (
    Chat,
    Media,
    Message,
    MessageStatus,
    MessageType,
    Page,
    Reason,
    SessionStatus,
    SessionView,
)
from actors.errors import (
    InvalidInput,
    MessageNotFound,
    PhoneAlreadyPaired,
    ServiceUnavailable,
    SessionNotFound,
)
from actors.events import HistoryChunk, HistoryConversation
from persistence.connection import DatabaseUnreachable, OneConnection
from persistence.send_records import SendRecords

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PAGE = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
MESSAGE_COLUMNS = (
    "id",
    "chat_id",
    "sender",
    "sender_alt",
    "sender_name",
    "from_me",
    "ts",
    "type",
    "text",
    "media",
    "media_ref",
    "quoted_id",
    "status",
)
_STATUS_ORDER = ", ".join(f"'{s.value}'" for s in sorted(MessageStatus, key=lambda s: s.rank))


def _rank(expr: str) -> str:
    return f"array_position(ARRAY[{_STATUS_ORDER}], {expr})"


# --- row decoding (shared with persistence.repo) ---------------------------------------------------------


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def media_to_json(media: Media | None) -> str | None:
    """The JSONB text stored in `message.media`."""
    if media is None:
        return None
    return json.dumps(
        {
            "mimetype": media.mimetype,
            "file_name": media.file_name,
            "size": media.size,
            "seconds": media.seconds,
            "ptt": media.ptt,
        }
    )


def media_from_json(value: Any) -> Media | None:
    """A `Media` from the stored JSONB (text or already decoded)."""
    data = _json(value)
    if not isinstance(data, dict) or not data.get("mimetype"):
        return None
    return Media(
        mimetype=str(data["mimetype"]),
        file_name=data.get("file_name"),
        size=data.get("size"),
        seconds=data.get("seconds"),
        ptt=bool(data.get("ptt", False)),
    )


def message_from_row(row: Mapping[Any, Any], prefix: str = "") -> Message:
    """A domain `Message` from a row holding MESSAGE_COLUMNS (optionally prefixed)."""

    def col(name: str) -> Any:
        return row[prefix + name]

    ref = _json(col("media_ref"))
    return Message(
        id=col("id"),
        chat_id=col("chat_id"),
        sender=col("sender"),
        sender_alt=col("sender_alt"),
        sender_name=col("sender_name"),
        from_me=col("from_me"),
        timestamp=_utc(col("ts")),
        type=MessageType(col("type")),
        text=col("text"),
        media=media_from_json(col("media")),
        media_ref=ref if isinstance(ref, dict) else None,
        quoted_id=col("quoted_id"),
        status=MessageStatus(col("status")),
    )


def session_view_from_row(row: Mapping[Any, Any]) -> SessionView:
    """A `SessionView` from a `whatsapp_session` row."""
    last_seen = row["last_seen"]
    return SessionView(
        id=str(row["id"]),
        user_id=row["user_id"],
        slot=row["slot"],
        status=SessionStatus(row["status"]),
        reason=Reason(row["reason"]) if row["reason"] else None,
        phone=row["phone"],
        display_name=row["display_name"],
        profile_pic_url=row["profile_pic_url"],
        last_seen=_utc(last_seen) if last_seen is not None else None,
    )


def chat_from_row(row: Mapping[Any, Any]) -> Chat:
    """A domain `Chat` from a chat row joined with its last message's columns prefixed `m_`."""
    ts = row["last_message_at"]
    return Chat(
        id=row["id"],
        name=row["name"],
        is_group=row["is_group"],
        unread_count=row["unread_count"],
        timestamp=_utc(ts) if ts is not None else None,
        last_message=message_from_row(row, "m_") if row.get("m_id") is not None else None,
    )


# --- keyset cursors ----------------------------------------------------------------------------------------


def encode_cursor(kind: str, ts: datetime | None, key: str) -> str:
    """An opaque url-safe cursor for the keyset position (ts, key) in a listing of `kind`."""
    micros = None if ts is None else (_utc(ts) - _EPOCH) // _MICROSECOND
    raw = json.dumps([kind, micros, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(kind: str, cursor: str) -> tuple[datetime | None, str]:
    """The (ts, key) a cursor of `kind` points after; InvalidInput for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, micros, key = json.loads(raw)
        if tag != kind or not isinstance(key, str) or not (micros is None or type(micros) is int):
            raise ValueError(cursor)
        ts = None if micros is None else _EPOCH + micros * _MICROSECOND
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as err:
        raise InvalidInput("Malformed cursor") from err
    return ts, key


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")


# --- the session row ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredSession:
    """The session's row as its actor needs it: what clients see plus device and pairing state."""

    view: SessionView
    device_jid: str | None
    qr_rounds: int
    connect_failures: int


_CHAT_SELECT = (
    "SELECT c.id, c.name, c.is_group, c.unread_count, c.last_message_at, "
    + ", ".join(f"m.{name} AS m_{name}" for name in MESSAGE_COLUMNS)
    + " FROM chat c LEFT JOIN message m"
    " ON m.session_id = c.session_id AND m.chat_id = c.id AND m.id = c.last_message_id"
)

# Upsert of a chat; `last_message_*` only ever moves to a newer (ts, id). {rows}, {unread} differ by caller.
_CHAT_UPSERT = """
INSERT INTO chat (session_id, id, name, is_group, unread_count, last_message_at, last_message_id)
{rows}
ON CONFLICT (session_id, id) DO UPDATE SET
    name = COALESCE(EXCLUDED.name, chat.name),
    is_group = EXCLUDED.is_group,
    unread_count = {unread},
    last_message_at = CASE WHEN {newer} THEN EXCLUDED.last_message_at ELSE chat.last_message_at END,
    last_message_id = CASE WHEN {newer} THEN EXCLUDED.last_message_id ELSE chat.last_message_id END
"""
_NEWER = (
    "(EXCLUDED.last_message_at IS NOT NULL AND (chat.last_message_at IS NULL OR "
    "(EXCLUDED.last_message_at, EXCLUDED.last_message_id) >= (chat.last_message_at, chat.last_message_id)))"
)
_CHAT_HISTORY = _CHAT_UPSERT.format(
    rows="VALUES ($1, $2, $3, $4, $5, $6, $7)",
    unread="GREATEST(chat.unread_count, EXCLUDED.unread_count)",
    newer=_NEWER,
)

_MESSAGE_VALUES = (
    "INSERT INTO message (session_id, " + ", ".join(MESSAGE_COLUMNS) + ")"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13, $14)"
)
_MESSAGE_HISTORY = _MESSAGE_VALUES + " ON CONFLICT (session_id, chat_id, id) DO NOTHING"
_MESSAGE_ADD = (
    _MESSAGE_VALUES
    + """
ON CONFLICT (session_id, chat_id, id) DO UPDATE SET
    text = COALESCE(EXCLUDED.text, message.text),
    sender_name = COALESCE(EXCLUDED.sender_name, message.sender_name),
    media = COALESCE(EXCLUDED.media, message.media),
    media_ref = COALESCE(EXCLUDED.media_ref, message.media_ref),
    status = CASE WHEN {new} > {old} THEN EXCLUDED.status ELSE message.status END
RETURNING (xmax = 0) AS inserted
""".format(new=_rank("EXCLUDED.status"), old=_rank("message.status"))
)

# A live message and its chat in one statement (one round trip instead of BEGIN, two, COMMIT): the chat
# upsert reads whether the message was new. $15 chat name, $16 is_group, $17 "count it as unread".
_MESSAGE_AND_CHAT_ADD = (
    "WITH m AS ("
    + _MESSAGE_ADD
    + "), c AS ("
    + _CHAT_UPSERT.format(
        rows="SELECT $1, $3, $15::text, $16::boolean,"
        " CASE WHEN m.inserted AND $17::boolean THEN 1 ELSE 0 END, $8, $2 FROM m",
        unread="chat.unread_count + EXCLUDED.unread_count",
        newer=_NEWER,
    )
    + ") SELECT inserted FROM m"
)


def _message_args(session_id: uuid.UUID, msg: Message) -> tuple[Any, ...]:
    return (
        session_id,
        msg.id,
        msg.chat_id,
        msg.sender,
        msg.sender_alt,
        msg.sender_name,
        msg.from_me,
        _utc(msg.timestamp),
        msg.type.value,
        msg.text,
        media_to_json(msg.media),
        json.dumps(msg.media_ref) if msg.media_ref is not None else None,
        msg.quoted_id,
        msg.status.value,
    )


def _newest(messages: Iterable[Message]) -> Message | None:
    return max(messages, key=lambda m: (_utc(m.timestamp), m.id), default=None)


def _pg_dsn(dsn: str) -> str:
    # asyncpg wants the libpq scheme; accept SQLAlchemy-style URLs without importing actors.config.
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn)


class SessionStore:
    """One session's persistent state, on asyncpg with raw SQL.

    Connection budget: a store holds at most ONE PostgreSQL connection, ever. It opens lazily on the
    first call and serves every call in turn (a lock serialises them; a connection runs one query at a
    time anyway). When the connection is lost it is discarded before a new one is opened and the call is
    retried once (every operation here is idempotent); if that fails too, or the database cannot be
    reached, the call raises `ServiceUnavailable`. So a fleet of N sessions costs N connections here,
    plus whatsmeow's own pool. `application_name` (default `wa-session-<id>`) makes them visible in
    `pg_stat_activity`.

    A missing session row (the session was deleted) raises `SessionNotFound` from every write.
    """

    def __init__(
        self,
        dsn: str,
        session_id: str,
        *,
        application_name: str | None = None,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.session_id = str(uuid.UUID(session_id))
        self._sid = uuid.UUID(session_id)
        self._db = OneConnection(
            _pg_dsn(dsn),
            application_name=application_name or f"wa-session-{self.session_id}",
            label=f"session {self.session_id}",
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
        )
        self.send_records = SendRecords(self._run, self._sid)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (the store reopens one if used again)."""
        await self._db.close()

    async def _run(self, op: Callable[[Any], Awaitable[T]]) -> T:
        try:
            return await self._db.run(op)
        except asyncpg.ForeignKeyViolationError as err:
            raise SessionNotFound() from err
        except TimeoutError as err:
            raise ServiceUnavailable("The database did not answer in time") from err
        except DatabaseUnreachable as err:
            raise ServiceUnavailable(str(err)) from err

    async def _update_row(self, sql: str, *args: Any) -> None:
        async def op(conn: Any) -> Any:
            return await conn.fetchval(sql, self._sid, *args)

        if await self._run(op) is None:
            raise SessionNotFound()

    # --- the session row ---

    async def load(self) -> StoredSession | None:
        """The session's row, or None when it no longer exists."""

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT id, user_id, slot, status, reason, phone, display_name, profile_pic_url, last_seen,"
                " device_jid, qr_rounds, connect_failures FROM whatsapp_session WHERE id = $1",
                self._sid,
            )

        row = await self._run(op)
        if row is None:
            return None
        return StoredSession(
            view=session_view_from_row(row),
            device_jid=row["device_jid"],
            qr_rounds=row["qr_rounds"],
            connect_failures=row["connect_failures"],
        )

    async def save_state(self, status: SessionStatus, reason: Reason | None = None) -> None:
        """Record the session's status and reason."""
        await self._update_row(
            "UPDATE whatsapp_session SET status = $2, reason = $3, updated_at = now()"
            " WHERE id = $1 RETURNING 1",
            status.value,
            reason.value if reason is not None else None,
        )

    async def save_profile(
        self,
        *,
        phone: str | None = None,
        display_name: str | None = None,
        profile_pic_url: str | None = None,
        device_jid: str | None = None,
    ) -> None:
        """Record what pairing or login told us; None keeps the stored value.

        Raises `PhoneAlreadyPaired` when another session already holds `phone` (nothing is written).
        """
        try:
            await self._update_row(
                "UPDATE whatsapp_session SET phone = COALESCE($2, phone),"
                " display_name = COALESCE($3, display_name), profile_pic_url = COALESCE($4, profile_pic_url),"
                " device_jid = COALESCE($5, device_jid), updated_at = now() WHERE id = $1 RETURNING 1",
                phone,
                display_name,
                profile_pic_url,
                device_jid,
            )
        except asyncpg.UniqueViolationError as err:
            raise PhoneAlreadyPaired(phone=phone) from err

    async def clear_device(self) -> None:
        """Forget the device (logged out): its JID and phone, so the number can be paired anywhere."""
        await self._update_row(
            "UPDATE whatsapp_session SET device_jid = NULL, phone = NULL, updated_at = now()"
            " WHERE id = $1 RETURNING 1"
        )

    async def set_counters(
        self, *, qr_rounds: int | None = None, connect_failures: int | None = None
    ) -> None:
        """Record pairing rounds used and failed dials in a row; None keeps the stored value."""
        await self._update_row(
            "UPDATE whatsapp_session SET qr_rounds = COALESCE($2, qr_rounds),"
            " connect_failures = COALESCE($3, connect_failures) WHERE id = $1 RETURNING 1",
            qr_rounds,
            connect_failures,
        )

    async def set_qr_rounds(self, rounds: int) -> None:
        """Record how many pairing rounds were used since the last pairing request."""
        await self.set_counters(qr_rounds=rounds)

    async def touch_last_seen(self, at: datetime | None = None) -> datetime:
        """Set `last_seen` to `at` (default now) unless it is already later; the time stored."""

        async def op(conn: Any) -> Any:
            return await conn.fetchval(
                "UPDATE whatsapp_session SET last_seen = GREATEST(last_seen, COALESCE($2, now()))"
                " WHERE id = $1 RETURNING last_seen",
                self._sid,
                at,
            )

        last_seen = await self._run(op)
        if last_seen is None:
            raise SessionNotFound()
        return _utc(last_seen)

    # --- chats and messages ---

    async def apply_history(self, chunk: HistoryChunk | Sequence[HistoryConversation]) -> None:
        """Store a history-sync chunk. Idempotent: chunks can repeat and overlap with live messages.

        Existing messages are left as they are; a chat's unread count is the larger of the stored one
        and the chunk's, and its last message only moves to a newer one.
        """

        conversations = chunk.conversations if isinstance(chunk, HistoryChunk) else chunk

        async def op(conn: Any) -> None:
            async with conn.transaction():
                for conv in conversations:
                    newest = _newest(conv.messages)
                    await conn.execute(
                        _CHAT_HISTORY,
                        self._sid,
                        conv.chat_id,
                        conv.name,
                        conv.is_group,
                        conv.unread_count,
                        _utc(newest.timestamp) if newest else None,
                        newest.id if newest else None,
                    )
                    if conv.messages:
                        await conn.executemany(
                            _MESSAGE_HISTORY, [_message_args(self._sid, m) for m in conv.messages]
                        )

        await self._run(op)

    async def add_message(
        self,
        message: Message,
        chat_name: str | None = None,
        is_group: bool | None = None,
        count_unread: bool = True,
    ) -> bool:
        """Store a live message (upsert); True if it was new.

        The chat is created if needed, its last message moves forward, and a new incoming message adds
        one to its unread count when `count_unread`. A repeated message never lowers its status.
        """
        group = message.chat_id.endswith("@g.us") if is_group is None else is_group

        args = (*_message_args(self._sid, message), chat_name, group, count_unread and not message.from_me)

        async def op(conn: Any) -> bool:
            return bool(await conn.fetchval(_MESSAGE_AND_CHAT_ADD, *args))

        return await self._run(op)

    async def apply_receipt(
        self, chat_id: str, message_ids: Sequence[str], status: MessageStatus
    ) -> list[Message]:
        """Move messages to `status` where that is forward; the messages that changed, in the given order.

        Unknown ids are ignored. FAILED is terminal: nothing leaves it, and only a pending message fails.
        """
        condition = f"{_rank('status')} < {_rank('$4')}"
        if status is MessageStatus.FAILED:
            condition = "status = 'pending'"
        sql = (
            "UPDATE message SET status = $4 WHERE session_id = $1 AND chat_id = $2"
            f" AND id = ANY($3::text[]) AND {condition} RETURNING {', '.join(MESSAGE_COLUMNS)}"
        )

        async def op(conn: Any) -> list[Any]:
            return list(await conn.fetch(sql, self._sid, chat_id, list(message_ids), status.value))

        changed = {row["id"]: message_from_row(row) for row in await self._run(op)}
        return [changed[mid] for mid in dict.fromkeys(message_ids) if mid in changed]

    async def chats(self, limit: int = 50, cursor: str | None = None) -> Page[Chat]:
        """Chats, most recent first (chats without messages last), `limit` per page."""
        _check_limit(limit)
        args: list[Any] = [self._sid, limit + 1]
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
        sql = f"{_CHAT_SELECT} WHERE {where} ORDER BY c.last_message_at DESC NULLS LAST, c.id DESC LIMIT $2"

        async def op(conn: Any) -> list[Any]:
            return list(await conn.fetch(sql, *args))

        items = [chat_from_row(row) for row in await self._run(op)]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor("chats", items[-1].timestamp, items[-1].id)
        return Page(items=tuple(items), next_cursor=next_cursor)

    async def messages(self, chat_id: str, limit: int = 50, cursor: str | None = None) -> Page[Message]:
        """A chat's messages, newest first, `limit` per page."""
        _check_limit(limit)
        args: list[Any] = [self._sid, chat_id, limit + 1]
        where = "session_id = $1 AND chat_id = $2"
        if cursor is not None:
            ts, key = decode_cursor("messages", cursor)
            if ts is None:
                raise InvalidInput("Malformed cursor")
            args += [ts, key]
            where += " AND (ts, id) < ($4, $5)"
        sql = (
            f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM message WHERE {where}"
            " ORDER BY ts DESC, id DESC LIMIT $3"
        )

        async def op(conn: Any) -> list[Any]:
            return list(await conn.fetch(sql, *args))

        items = [message_from_row(row) for row in await self._run(op)]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor("messages", items[-1].timestamp, items[-1].id)
        return Page(items=tuple(items), next_cursor=next_cursor)

    async def get_message(self, chat_id: str, message_id: str) -> Message:
        """One message; MessageNotFound if this session has no such message in that chat."""

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM message"
                " WHERE session_id = $1 AND chat_id = $2 AND id = $3",
                self._sid,
                chat_id,
                message_id,
            )

        row = await self._run(op)
        if row is None:
            raise MessageNotFound(chat_id=chat_id, message_id=message_id)
        return message_from_row(row)

    async def mark_chat_read(self, chat_id: str) -> None:
        """Set the chat's unread count to zero (nothing happens for an unknown chat)."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "UPDATE chat SET unread_count = 0 WHERE session_id = $1 AND id = $2", self._sid, chat_id
            )

        await self._run(op)

    async def purge(self) -> None:
        """Delete every chat and message of this session (the session row stays)."""

        async def op(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM message WHERE session_id = $1", self._sid)
                await conn.execute("DELETE FROM chat WHERE session_id = $1", self._sid)

        await self._run(op)
