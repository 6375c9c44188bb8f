"""Searching one chat's messages in PostgreSQL: full-text (`simple` configuration: no language's
stemming, so any language's words match as written) or, for a part of a word or a number, a substring.

The words are those of index ix_message_words (`MESSAGE_WORDS`); a search reads one chat's messages,
which its (session, chat, ts) key already narrows.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kernel.domain import Message
from persistence.inbox_reads import chat_of
from persistence.reads import driver_connection
from persistence.rows import MESSAGE_COLUMNS, MESSAGE_WORDS, message_from_row

MAX_QUERY = 200
MAX_RESULTS = 100

_SEARCH = f"""
SELECT {", ".join(MESSAGE_COLUMNS)} FROM message
WHERE session_id = $1 AND chat_id = $2 AND type <> 'revoked'
  AND ({MESSAGE_WORDS} @@ websearch_to_tsquery('simple', $3)
       OR text ILIKE $4 ESCAPE '\\' OR summary ILIKE $4 ESCAPE '\\')
ORDER BY ts DESC, id DESC
LIMIT $5
"""


def _like(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_messages(
    db: AsyncSession, session_id: str, chat_id: str, query: str, limit: int
) -> list[Message]:
    """A chat's messages that match `query`, newest first (at most `limit`); ChatNotFound, SessionNotFound
    as for reading the chat."""
    conn: Any = await driver_connection(db)
    sid = uuid.UUID(session_id)
    jid = await chat_of(conn, sid, chat_id)
    rows = await conn.fetch(_SEARCH, sid, jid, query, _like(query), limit)
    return [message_from_row(row) for row in rows]
