"""Searching the inbox: a chat's messages that match some words, and the user's chats (by name or
number) and messages across every connected number, from PostgreSQL (full-text and trigram indexes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import OwnedSession, Resources, UserId
from api.errors import error_responses
from api.routes.inbox import inbox_chat_json
from api.routes.messages import ChatId
from api.schemas import InboxSearchOut, MessagePage
from kernel.domain import SessionStatus
from kernel.ids import to_jid
from kernel.wire import JSON, message_json
from persistence import repo
from persistence.inbox_search import search_inbox as find_in_inbox
from persistence.message_search import MAX_QUERY, MAX_RESULTS, search_messages

router = APIRouter(tags=["messages"])

Words = Annotated[
    str,
    Query(
        alias="q",
        min_length=1,
        max_length=MAX_QUERY,
        pattern=r"^[^\x00]*$",  # PostgreSQL text cannot hold NUL: a 422, not a 500
        description='Words to find (all of them, in any form of `"a phrase"` or `-not`), or a part of one',
    ),
]
Results = Annotated[int, Query(ge=1, le=MAX_RESULTS, description="At most this many messages")]


@router.get(
    "/sessions/{id}/chats/{chatId}/search", response_model=MessagePage, responses=error_responses(400, 404)
)
async def search_chat(
    session_id: OwnedSession, res: Resources, chat_id: ChatId, words: Words, limit: Results = 50
) -> JSON:
    """A chat's messages that contain the words of `q` (whole words, any order) or `q` as a part of their
    text, newest first; deleted messages never match. `nextCursor` is always null."""
    found = await res.db.run(search_messages, session_id, to_jid(chat_id), words.strip() or words, limit)
    return {"items": [message_json(m) for m in found], "nextCursor": None}


@router.get("/inbox/search", response_model=InboxSearchOut, responses=error_responses(400))
async def search_inbox(res: Resources, user: UserId, words: Words, limit: Results = 20) -> JSON:
    """Across every connected number of the user (as `/inbox/chats`), not only the chats a client has
    loaded: chats whose name holds `q` (any case) or whose number holds its digits (`+49 151`, `0151`),
    and messages holding its words (whole words, any order; deleted ones never match); `limit` each."""
    query = words.strip() or words
    sessions = await res.db.run(repo.list_sessions, user)
    connected = [s.id for s in sessions if s.status == SessionStatus.CONNECTED]
    chats, found = await res.db.run(find_in_inbox, connected, query, limit)
    return {
        "chats": [inbox_chat_json(c) for c in chats],
        "messages": [
            {"sessionId": f.session_id, "chatName": f.chat_name, "message": message_json(f.message)}
            for f in found
        ],
    }
