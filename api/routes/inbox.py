"""The merged inbox: chats of all the user's connected numbers, most recent first."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Resources, UserId
from api.errors import error_responses
from api.schemas import InboxOut
from kernel.domain import Chat, SessionStatus
from kernel.wire import JSON, chat_json, picture_path
from persistence import repo
from persistence.session_store import MAX_PAGE

router = APIRouter(tags=["messages"])


@router.get("/inbox/chats", response_model=InboxOut, responses=error_responses(400))
async def inbox_chats(
    res: Resources, user: UserId, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50
) -> JSON:
    """Chats of every connected number of the user, merged by recency, each with its `sessionId`."""
    sessions = await res.db.run(repo.list_sessions, user)
    connected = [s.id for s in sessions if s.status == SessionStatus.CONNECTED]
    chats = await res.db.run(repo.inbox_chats, user, connected, limit) if connected else []
    return {"items": [inbox_chat_json(c) for c in chats]}


def inbox_chat_json(item: repo.InboxChat) -> JSON:
    """A chat of the merged inbox: the chat with its number's `sessionId`."""
    return {**chat_json(_with_picture(item)), "sessionId": item.session_id}


def _with_picture(item: repo.InboxChat) -> Chat:
    """The chat with the bridge's picture URL when it has a picture (never the stored CDN link)."""
    chat = item.chat
    url = picture_path(item.session_id, chat.id) if chat.picture_id is not None else None
    return replace(chat, picture_url=url)
