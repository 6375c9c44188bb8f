"""Searching within a chat: its messages that match some words, from PostgreSQL's full-text search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import OwnedSession, Resources
from api.errors import error_responses
from api.routes.messages import ChatId
from api.schemas import MessagePage
from kernel.ids import to_jid
from kernel.wire import JSON, message_json
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
