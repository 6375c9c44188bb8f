"""What happens to stored messages and chats after they arrive: reactions, edits, revokes, reads.

Mixed into `persistence.inbox_store.InboxStore` (import-light like it). Every operation is idempotent and
answers what changed (None when nothing did), so a journal replay publishes no frame twice.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from kernel.domain import Message, MessageType, PollVote, Reaction
from kernel.message_kinds import content_json, option_hash
from kernel.stored import ChatRead
from persistence.connection import Runner
from persistence.rows import MESSAGE_COLUMNS, message_from_row, reactions_to_json, utc

T = TypeVar("T")

_COLUMNS = ", ".join(MESSAGE_COLUMNS)


class InboxChanges:
    """Changes to one session's stored messages and chats (`SessionStore` gives the id and connection)."""

    def __init__(self, run: Runner, session_id: uuid.UUID) -> None:
        self._run = run
        self._sid = session_id

    async def apply_reaction(self, chat_id: str, message_id: str, reaction: Reaction) -> Message | None:
        """Set `reaction.sender`'s reaction on a message (emoji "" removes it); the message if it changed.

        One reaction per sender; an older reaction than the one stored is ignored (so a replay changes
        nothing). None for an unknown or revoked message.
        """
        sql = f"SELECT {_COLUMNS} FROM message WHERE session_id = $1 AND chat_id = $2 AND id = $3"

        async def op(conn: Any) -> Message | None:
            async with conn.transaction():
                row = await conn.fetchrow(sql + " FOR UPDATE", self._sid, chat_id, message_id)
                if row is None:
                    return None
                message = message_from_row(row)
                if message.type is MessageType.REVOKED:
                    return None
                mine = [r for r in message.reactions if r.sender == reaction.sender]
                if mine and utc(mine[0].timestamp) >= utc(reaction.timestamp):
                    return None
                kept = tuple(r for r in message.reactions if r.sender != reaction.sender)
                reactions = (*kept, reaction) if reaction.emoji else kept
                if not mine and not reaction.emoji:
                    return None
                await conn.execute(
                    "UPDATE message SET reactions = $4::jsonb"
                    " WHERE session_id = $1 AND chat_id = $2 AND id = $3",
                    self._sid,
                    chat_id,
                    message_id,
                    reactions_to_json(reactions),
                )
                return replace(message, reactions=reactions)

        return await self._run(op)

    async def apply_vote(
        self, chat_id: str, poll_id: str, voter: str, option_hashes: tuple[str, ...], at: datetime
    ) -> Message | None:
        """`voter`'s choice in a poll (options named by their hashes, as WhatsApp sends them); the poll
        if it changed. One vote per voter, the latest wins (a replay changes nothing); None for an unknown
        message or one that is not a poll."""
        sql = f"SELECT {_COLUMNS} FROM message WHERE session_id = $1 AND chat_id = $2 AND id = $3"

        async def op(conn: Any) -> Message | None:
            async with conn.transaction():
                row = await conn.fetchrow(sql + " FOR UPDATE", self._sid, chat_id, poll_id)
                if row is None:
                    return None
                message = message_from_row(row)
                poll = message.poll
                if poll is None or message.type is not MessageType.POLL:
                    return None
                mine = [v for v in poll.votes if v.voter == voter]
                if mine and utc(mine[0].timestamp) >= utc(at):
                    return None
                by_hash = {option_hash(o): o for o in poll.options}
                chosen = tuple(by_hash[h] for h in option_hashes if h in by_hash)
                kept = tuple(v for v in poll.votes if v.voter != voter)
                voted = replace(poll, votes=(*kept, PollVote(voter, chosen, utc(at))))
                await conn.execute(
                    "UPDATE message SET content = $4::jsonb"
                    " WHERE session_id = $1 AND chat_id = $2 AND id = $3",
                    self._sid,
                    chat_id,
                    poll_id,
                    json.dumps(content_json(None, (), voted)),
                )
                return replace(message, poll=voted)

        return await self._run(op)

    async def apply_edit(
        self, chat_id: str, message_id: str, text: str, edited_at: datetime
    ) -> Message | None:
        """The message's new text (a later edit wins; a replay changes nothing); the message if it changed."""

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                "UPDATE message SET text = $4, edited_at = $5 WHERE session_id = $1 AND chat_id = $2"
                " AND id = $3 AND type <> 'revoked' AND (edited_at IS NULL OR edited_at < $5)"
                f" RETURNING {_COLUMNS}",
                self._sid,
                chat_id,
                message_id,
                text,
                utc(edited_at),
            )

        row = await self._run(op)
        return message_from_row(row) if row is not None else None

    async def apply_revoke(self, chat_id: str, message_id: str) -> Message | None:
        """Deleted for everyone: `type` revoked, and its text, media, reference, content, summary and
        reactions gone from the row. The message if it changed (a replay changes nothing)."""

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                "UPDATE message SET type = 'revoked', text = NULL, media = NULL, media_ref = NULL,"
                " content = NULL, summary = NULL, reactions = NULL, edited_at = NULL"
                " WHERE session_id = $1 AND chat_id = $2 AND id = $3 AND type <> 'revoked'"
                f" RETURNING {_COLUMNS}",
                self._sid,
                chat_id,
                message_id,
            )

        row = await self._run(op)
        return message_from_row(row) if row is not None else None

    async def apply_chat_read(self, chat_id: str, up_to: datetime | None = None) -> ChatRead | None:
        """The chat read up to `up_to` (None: all of it): its unread count drops to the incoming messages
        after `up_to` (never rises). The chat's new count and name if the count changed, else None."""

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                "WITH old AS (SELECT unread_count FROM chat WHERE session_id = $1 AND id = $2 FOR UPDATE)"
                " UPDATE chat SET unread_count = CASE WHEN $3::timestamptz IS NULL THEN 0 ELSE LEAST("
                "chat.unread_count, (SELECT count(*) FROM message m"
                " WHERE m.session_id = $1 AND m.chat_id = $2 AND NOT m.from_me AND m.ts > $3)) END"
                " FROM old WHERE chat.session_id = $1 AND chat.id = $2"
                " RETURNING chat.unread_count, chat.name, old.unread_count AS before",
                self._sid,
                chat_id,
                utc(up_to) if up_to is not None else None,
            )

        row = await self._run(op)
        if row is None or row["unread_count"] == row["before"]:
            return None
        return ChatRead(chat_id, row["unread_count"], row["name"])

    async def unread_incoming(self, chat_id: str, limit: int) -> list[Message]:
        """The chat's newest incoming messages that count as unread (at most `limit`, newest first)."""

        async def op(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    f"SELECT {', '.join('m.' + c for c in MESSAGE_COLUMNS)} FROM message m"
                    " JOIN chat c ON c.session_id = m.session_id AND c.id = m.chat_id"
                    " WHERE m.session_id = $1 AND m.chat_id = $2 AND NOT m.from_me AND m.type <> 'revoked'"
                    " ORDER BY m.ts DESC, m.id DESC LIMIT LEAST($3, (SELECT unread_count FROM chat"
                    " WHERE session_id = $1 AND id = $2))",
                    self._sid,
                    chat_id,
                    limit,
                )
            )

        return [message_from_row(row) for row in await self._run(op)]
