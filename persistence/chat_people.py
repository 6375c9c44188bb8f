"""Who a session's chats are with: names (by source), pictures, and LID ↔ phone-number links.

Mixed into `persistence.session_store.SessionStore` (import-light like it). Every operation is idempotent
and answers what changed (None when nothing did), so a journal replay publishes no frame twice.
- Names: "contact" (the phone's address book) and "subject" (a group's) beat "push" (the contact's own);
  a name is only ever replaced by one of the same or a better source.
- Links: one row per LID. Linking a LID whose chat already exists merges that chat into the phone
  number's: its messages move (the LID sender becomes the phone, the LID its alternative), the unread
  counts add up, the newer last message and the better name win, and the LID chat is gone.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar

from kernel.domain import Chat
from kernel.stored import StoredPicture
from persistence.connection import Runner
from persistence.inbox_reads import stored_picture
from persistence.rows import utc

__all__ = ["ChatPeople", "StoredPicture"]

T = TypeVar("T")


def _rank(expr: str) -> str:
    return f"(CASE {expr} WHEN 'contact' THEN 3 WHEN 'subject' THEN 3 WHEN 'push' THEN 2 ELSE 0 END)"


_MERGE = f"""
UPDATE chat p SET
    unread_count = p.unread_count + l.unread_count,
    last_message_at = CASE WHEN p.last_message_at IS NULL OR l.last_message_at > p.last_message_at
        THEN l.last_message_at ELSE p.last_message_at END,
    last_message_id = CASE WHEN p.last_message_at IS NULL OR l.last_message_at > p.last_message_at
        THEN l.last_message_id ELSE p.last_message_id END,
    name = CASE WHEN {_rank("l.name_source")} > {_rank("p.name_source")} THEN l.name
        ELSE COALESCE(p.name, l.name) END,
    name_source = CASE WHEN {_rank("l.name_source")} > {_rank("p.name_source")} THEN l.name_source
        ELSE p.name_source END,
    picture_id = COALESCE(p.picture_id, l.picture_id),
    picture_url = COALESCE(p.picture_url, l.picture_url),
    picture_checked_at = COALESCE(p.picture_checked_at, l.picture_checked_at)
FROM chat l
WHERE p.session_id = $1 AND p.id = $3 AND l.session_id = $1 AND l.id = $2
RETURNING p.id, p.name, p.unread_count
"""


class ChatPeople:
    """Names, pictures and identity links of one session's chats (`SessionStore` gives id and connection)."""

    def __init__(self, run: Runner, session_id: uuid.UUID) -> None:
        self._run = run
        self._sid = session_id

    async def save_contact_name(self, jid: str, name: str, source: str) -> Chat | None:
        """Name an existing chat unless it has a name from a better source; the chat if its name changed."""
        sql = (
            f"UPDATE chat SET name = $3, name_source = $4 WHERE session_id = $1 AND id = $2"
            f" AND {_rank('$4::text')} >= {_rank('name_source')}"
            " AND (name IS DISTINCT FROM $3 OR name_source IS DISTINCT FROM $4)"
            " RETURNING id, name, is_group, unread_count"
        )

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(sql, self._sid, jid, name, source)

        row = await self._run(op)
        if row is None:
            return None
        return Chat(row["id"], row["name"], row["is_group"], row["unread_count"], None)

    async def group_chat(self, jid: str, subject: str | None) -> Chat:
        """The group's chat, made if the inbox has none yet (a group joined or created before any
        message), with `subject` as its name when given."""
        sql = (
            "INSERT INTO chat (session_id, id, name, is_group, unread_count, name_source)"
            " VALUES ($1, $2, $3, true, 0, CASE WHEN $3::varchar IS NOT NULL THEN 'subject' END)"
            " ON CONFLICT (session_id, id) DO UPDATE SET name = COALESCE($3, chat.name),"
            " name_source = CASE WHEN $3::varchar IS NOT NULL THEN 'subject' ELSE chat.name_source END"
            " RETURNING id, name, is_group, unread_count"
        )

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(sql, self._sid, jid, subject)

        row = await self._run(op)
        return Chat(row["id"], row["name"], row["is_group"], row["unread_count"], None)

    async def identity_links(self) -> dict[str, str]:
        """Every LID → phone-number link this session learned."""

        async def op(conn: Any) -> list[Any]:
            return list(
                await conn.fetch("SELECT lid, pn FROM identity_link WHERE session_id = $1", self._sid)
            )

        return {row["lid"]: row["pn"] for row in await self._run(op)}

    async def link_identity(self, lid: str, pn: str) -> Chat | None:
        """Record that `lid` is `pn`; merge a LID chat into the phone number's. The merged chat, if any."""

        async def op(conn: Any) -> Any:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO identity_link (session_id, lid, pn) VALUES ($1, $2, $3)"
                    " ON CONFLICT (session_id, lid) DO UPDATE SET pn = EXCLUDED.pn",
                    self._sid,
                    lid,
                    pn,
                )
                exists = await conn.fetchval(
                    "SELECT 1 FROM chat WHERE session_id = $1 AND id = $2 FOR UPDATE", self._sid, lid
                )
                if exists is None:
                    return None
                await conn.execute(
                    "INSERT INTO chat (session_id, id, is_group, unread_count) VALUES ($1, $2, false, 0)"
                    " ON CONFLICT (session_id, id) DO NOTHING",
                    self._sid,
                    pn,
                )
                # A message stored under both chats (seen by LID and by number) keeps its number copy.
                await conn.execute(
                    "DELETE FROM message l USING message p WHERE l.session_id = $1 AND l.chat_id = $2"
                    " AND p.session_id = $1 AND p.chat_id = $3 AND p.id = l.id",
                    self._sid,
                    lid,
                    pn,
                )
                await conn.execute(
                    "UPDATE message SET chat_id = $3,"
                    " sender_alt = CASE WHEN sender = $2 THEN $2 ELSE sender_alt END,"
                    " sender = CASE WHEN sender = $2 THEN $3 ELSE sender END"
                    " WHERE session_id = $1 AND chat_id = $2",
                    self._sid,
                    lid,
                    pn,
                )
                row = await conn.fetchrow(_MERGE, self._sid, lid, pn)
                await conn.execute("DELETE FROM chat WHERE session_id = $1 AND id = $2", self._sid, lid)
                return row

        row = await self._run(op)
        if row is None:
            return None
        return Chat(row["id"], row["name"], False, row["unread_count"], None)

    async def save_picture(
        self, chat_id: str, picture_id: str | None, url: str | None, checked_at: datetime | None
    ) -> None:
        """Record what WhatsApp last said about a chat's picture (nothing happens for an unknown chat);
        `checked_at` None: out of date, fetched again on next use."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "UPDATE chat SET picture_id = $3, picture_url = $4, picture_checked_at = $5"
                " WHERE session_id = $1 AND id = $2",
                self._sid,
                chat_id,
                picture_id,
                url,
                utc(checked_at) if checked_at is not None else None,
            )

        await self._run(op)

    async def picture(self, chat_id: str) -> StoredPicture:
        """A chat's picture as last fetched; ChatNotFound for a chat this session does not have."""
        return await self._run(lambda conn: stored_picture(conn, self._sid, chat_id))

    async def cache_picture(self, chat_id: str, key: str, mimetype: str, data: bytes) -> None:
        """Keep the bytes of a chat's (or our own) picture just downloaded, for the API to serve."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO picture_cache (session_id, chat_id, picture_key, mimetype, data)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, chat_id) DO UPDATE SET"
                " picture_key = EXCLUDED.picture_key, mimetype = EXCLUDED.mimetype, data = EXCLUDED.data,"
                " fetched_at = now()",
                self._sid,
                chat_id,
                key,
                mimetype,
                data,
            )

        await self._run(op)
