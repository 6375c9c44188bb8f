"""Searching a user's whole inbox in PostgreSQL, not only the chats a client has loaded.

Chats match by a part of their name (any case) or of their number (digits as people write them:
`+49 151 234`, `0151 234`, `(415) 555`); messages by their words (full-text, index ix_message_words).
The trigram index ix_chat_name_trgm serves the parts of names; numbers are matched among the chats of
the user's numbers, which the chat table's key finds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kernel.domain import Message
from persistence.inbox_reads import CHAT_SELECT
from persistence.reads import driver_connection
from persistence.repo import InboxChat
from persistence.rows import MESSAGE_COLUMNS, chat_from_row, message_from_row, message_words

# A number as people write it: digits with spaces, dashes, dots, brackets and a leading + or 00.
_NUMBERISH = re.compile(r"^\+?[\d\s().-]+$")
MIN_DIGITS = 3  # fewer digits than this are part of too many numbers to be a search by number

CHAT_SEARCH = f"""
SELECT c.session_id, {CHAT_SELECT.removeprefix("SELECT ")}
WHERE c.session_id = ANY($1::uuid[])
  AND (c.name ILIKE $2 ESCAPE '\\'
       OR ($3::text IS NOT NULL AND c.id LIKE $3 AND c.id LIKE '%@s.whatsapp.net'))
ORDER BY c.last_message_at DESC NULLS LAST, c.session_id, c.id DESC
LIMIT $4
"""

MESSAGE_SEARCH = f"""
SELECT m.session_id, c.name AS chat_name, {", ".join(f"m.{name}" for name in MESSAGE_COLUMNS)}
FROM message m JOIN chat c ON c.session_id = m.session_id AND c.id = m.chat_id
WHERE m.session_id = ANY($1::uuid[]) AND m.type <> 'revoked'
  AND {message_words("m")} @@ websearch_to_tsquery('simple', $2)
ORDER BY m.ts DESC, m.id DESC
LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class FoundMessage:
    """A message that matched, with its number and its chat's name (None: the chat has none)."""

    session_id: str
    chat_name: str | None
    message: Message


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def number_pattern(query: str) -> str | None:
    """A LIKE pattern for the chat ids that hold the query's digits (a 1:1 chat's id is its number
    and `@s.whatsapp.net`), or None when the query is not a number. A leading 0 (a trunk prefix, or 00
    for an international call) is dropped: stored numbers are international."""
    if not _NUMBERISH.match(query.strip()):
        return None
    digits = re.sub(r"\D", "", query).lstrip("0")
    return f"%{digits}%" if len(digits) >= MIN_DIGITS else None


async def search_inbox(
    db: AsyncSession, session_ids: Sequence[str], query: str, limit: int
) -> tuple[list[InboxChat], list[FoundMessage]]:
    """Chats of these sessions whose name or number holds `query`, most recent first, and their
    messages (every chat) that hold its words, newest first; at most `limit` of each."""
    if not session_ids:
        return [], []
    conn: Any = await driver_connection(db)
    sids = [uuid.UUID(sid) for sid in session_ids]
    chats = await conn.fetch(CHAT_SEARCH, sids, _like(query), number_pattern(query), limit)
    messages = await conn.fetch(MESSAGE_SEARCH, sids, query, limit)
    return (
        [InboxChat(session_id=str(row["session_id"]), chat=chat_from_row(row)) for row in chats],
        [FoundMessage(str(row["session_id"]), row["chat_name"], message_from_row(row)) for row in messages],
    )
