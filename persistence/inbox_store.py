"""A session's chats and messages: the part of its store the inbox reads and writes.

Import-light like `persistence.session_store` (asyncpg, the stdlib, `kernel.domain`/`errors`/`events`).
`InboxStore` is mixed into `SessionStore`, which gives it the session id and the one connection.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from kernel.domain import Chat, Message, MessageStatus, Page
from kernel.events import HistoryChunk, HistoryConversation
from kernel.message_kinds import content_json
from kernel.stored import ChatRead
from persistence.inbox_changes import InboxChanges
from persistence.inbox_reads import chat_page, message_page, one_message
from persistence.rows import (
    MESSAGE_COLUMNS,
    media_to_json,
    message_from_row,
    rank,
    reactions_to_json,
    utc,
)

T = TypeVar("T")


# Upsert of a chat; `last_message_*` only ever moves to a newer (ts, id). {rows}, {unread} differ by caller.
_CHAT_UPSERT = """
INSERT INTO chat (session_id, id, name, is_group, unread_count, last_message_at, last_message_id, name_source)
{rows}
ON CONFLICT (session_id, id) DO UPDATE SET
    name = CASE WHEN chat.name_source IN ('contact', 'subject') THEN chat.name
        ELSE COALESCE(EXCLUDED.name, chat.name) END,
    name_source = CASE WHEN chat.name_source IN ('contact', 'subject') THEN chat.name_source
        ELSE COALESCE(EXCLUDED.name_source, chat.name_source) END,
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
    rows="VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $3::varchar IS NOT NULL THEN 'push' END)",
    unread="GREATEST(chat.unread_count, EXCLUDED.unread_count)",
    newer=_NEWER,
)

# What a `chat` frame is about, with what else shows a history chunk changed the chat (its last message).
_CHAT_STATE = (
    "SELECT id, unread_count, name, last_message_at, last_message_id,"
    " (SELECT count(*) FROM message m WHERE m.session_id = chat.session_id AND m.chat_id = chat.id) AS n"
    " FROM chat WHERE session_id = $1 AND id = ANY($2::text[]) ORDER BY id"
)

_JSONB_COLUMNS = frozenset({"media", "media_ref", "reactions", "content"})
# $1 is the session id, then one parameter per column (id $2, chat_id $3, ts $8: see MESSAGE_COLUMNS).
_MESSAGE_VALUES = (
    "INSERT INTO message (session_id, "
    + ", ".join(MESSAGE_COLUMNS)
    + ") VALUES ($1, "
    + ", ".join(
        f"${i}::jsonb" if name in _JSONB_COLUMNS else f"${i}" for i, name in enumerate(MESSAGE_COLUMNS, 2)
    )
    + ")"
)
_MESSAGE_HISTORY = _MESSAGE_VALUES + " ON CONFLICT (session_id, chat_id, id) DO NOTHING"
# A message seen again keeps what happened to it since: a revoke (no content comes back) or an edit.
_MESSAGE_ADD = (
    _MESSAGE_VALUES
    + """
ON CONFLICT (session_id, chat_id, id) DO UPDATE SET
    text = CASE WHEN message.type = 'revoked' OR message.edited_at IS NOT NULL THEN message.text
        ELSE COALESCE(EXCLUDED.text, message.text) END,
    sender_name = COALESCE(EXCLUDED.sender_name, message.sender_name),
    media = CASE WHEN message.type = 'revoked' THEN NULL ELSE COALESCE(EXCLUDED.media, message.media) END,
    media_ref = CASE WHEN message.type = 'revoked' THEN NULL
        ELSE COALESCE(EXCLUDED.media_ref, message.media_ref) END,
    summary = CASE WHEN message.type = 'revoked' THEN NULL
        ELSE COALESCE(EXCLUDED.summary, message.summary) END,
    content = CASE WHEN message.type = 'revoked' THEN NULL
        ELSE COALESCE(EXCLUDED.content, message.content) END,
    status = CASE WHEN {new} > {old} THEN EXCLUDED.status ELSE message.status END
RETURNING (xmax = 0) AS inserted
""".format(new=rank("EXCLUDED.status"), old=rank("message.status"))
)

# A live message and its chat in one statement (one round trip instead of BEGIN, two, COMMIT): the chat
# upsert reads whether the message was new. After the message's parameters: the chat name, is_group and
# "count it as unread".
_CHAT_ARG = len(MESSAGE_COLUMNS) + 2
_MESSAGE_AND_CHAT_ADD = (
    "WITH m AS ("
    + _MESSAGE_ADD
    + "), c AS ("
    + _CHAT_UPSERT.format(
        rows=f"SELECT $1, $3, ${_CHAT_ARG}::text, ${_CHAT_ARG + 1}::boolean,"
        f" CASE WHEN m.inserted AND ${_CHAT_ARG + 2}::boolean THEN 1 ELSE 0 END, $8, $2,"
        f" CASE WHEN ${_CHAT_ARG}::text IS NOT NULL THEN 'push' END FROM m",
        unread="chat.unread_count + EXCLUDED.unread_count",
        newer=_NEWER,
    )
    + ") SELECT inserted FROM m"
)


def _message_args(session_id: uuid.UUID, msg: Message) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "id": msg.id,
        "chat_id": msg.chat_id,
        "sender": msg.sender,
        "sender_alt": msg.sender_alt,
        "sender_name": msg.sender_name,
        "from_me": msg.from_me,
        "ts": utc(msg.timestamp),
        "type": msg.type.value,
        "text": msg.text,
        "media": media_to_json(msg.media),
        "media_ref": json.dumps(msg.media_ref) if msg.media_ref is not None else None,
        "quoted_id": msg.quoted_id,
        "status": msg.status.value,
        "summary": msg.summary,
        "edited_at": utc(msg.edited_at) if msg.edited_at is not None else None,
        "reactions": reactions_to_json(msg.reactions),
        "content": _content(msg),
        "view_once": msg.view_once,
    }
    return (session_id, *(values[name] for name in MESSAGE_COLUMNS))


def _content(msg: Message) -> str | None:
    data = content_json(msg.location, msg.contacts, msg.poll)
    return json.dumps(data) if data is not None else None


def _newest(messages: Iterable[Message]) -> Message | None:
    return max(messages, key=lambda m: (utc(m.timestamp), m.id), default=None)


class InboxStore(InboxChanges):
    """Chats and messages of one session; every operation is idempotent (the store retries it once)."""

    async def apply_history(self, chunk: HistoryChunk | Sequence[HistoryConversation]) -> list[ChatRead]:
        """Store a history-sync chunk; the chats it added or changed (what their `chat` frames say).

        Idempotent: chunks can repeat and overlap with live messages. Existing messages are left as they
        are; a chat's unread count is the larger of the stored one and the chunk's, and its last message
        only moves to a newer one. A chunk that changes nothing returns no chat.
        """

        conversations = chunk.conversations if isinstance(chunk, HistoryChunk) else chunk
        chat_ids = list(dict.fromkeys(conv.chat_id for conv in conversations))

        async def op(conn: Any) -> list[ChatRead]:
            async with conn.transaction():
                before = {row["id"]: tuple(row) for row in await conn.fetch(_CHAT_STATE, self._sid, chat_ids)}
                for conv in conversations:
                    newest = _newest(conv.messages)
                    await conn.execute(
                        _CHAT_HISTORY,
                        self._sid,
                        conv.chat_id,
                        conv.name,
                        conv.is_group,
                        conv.unread_count,
                        utc(newest.timestamp) if newest else None,
                        newest.id if newest else None,
                    )
                    if conv.messages:
                        await conn.executemany(
                            _MESSAGE_HISTORY, [_message_args(self._sid, m) for m in conv.messages]
                        )
                after = await conn.fetch(_CHAT_STATE, self._sid, chat_ids)
            return [
                ChatRead(row["id"], row["unread_count"], row["name"])
                for row in after
                if before.get(row["id"]) != tuple(row)
            ]

        return await self._run(op)

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
        condition = f"{rank('status')} < {rank('$4')}"
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
        return await self._run(lambda conn: chat_page(conn, self._sid, limit, cursor))

    async def messages(self, chat_id: str, limit: int = 50, cursor: str | None = None) -> Page[Message]:
        """A chat's messages, newest first, `limit` per page."""
        return await self._run(lambda conn: message_page(conn, self._sid, chat_id, limit, cursor))

    async def get_message(self, chat_id: str, message_id: str) -> Message:
        """One message; MessageNotFound if this session has no such message in that chat."""
        return await self._run(lambda conn: one_message(conn, self._sid, chat_id, message_id))

    async def mark_chat_read(self, chat_id: str) -> None:
        """Set the chat's unread count to zero (nothing happens for an unknown chat)."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "UPDATE chat SET unread_count = 0 WHERE session_id = $1 AND id = $2", self._sid, chat_id
            )

        await self._run(op)

    async def purge(self) -> None:
        """Delete every chat, message and cached picture of this session (the session row stays)."""

        async def op(conn: Any) -> None:
            async with conn.transaction():
                await purge_inbox(conn, self._sid)

        await self._run(op)


async def purge_inbox(conn: Any, session_id: uuid.UUID) -> None:
    """Delete a session's chats, messages, cached pictures and send records, inside the caller's
    transaction (what `DELETE /sessions/{id}` removes, but the session row)."""
    for table in ("picture_cache", "message", "chat", "send_record"):
        await conn.execute(f"DELETE FROM {table} WHERE session_id = $1", session_id)
