"""Reading a session's chats, messages, media and pictures.

Chats, messages (with their media's metadata) and cached pictures come from PostgreSQL (`api.reads`),
whatever the session's process is doing; media bytes, and pictures never downloaded, are fetched from
WhatsApp by the session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse

from api import reads
from api.deps import OwnedSession, Resources
from api.errors import error_responses
from api.schemas import MAX_ID, RECIPIENT_PATTERN, ChatPage, MessagePage
from kernel.ids import to_jid
from kernel.wire import JSON, chat_json, message_json
from persistence.session_store import MAX_PAGE

router = APIRouter(tags=["messages"])

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=512, description="`nextCursor` of the previous page")]
ChatId = Annotated[
    str,
    Path(
        alias="chatId",
        max_length=MAX_ID,
        description="A chat JID or a phone number",
        json_schema_extra={"pattern": RECIPIENT_PATTERN},
    ),
]
MessageId = Annotated[str, Path(alias="messageId", max_length=MAX_ID)]


@router.get("/sessions/{id}/chats", response_model=ChatPage, responses=error_responses(400, 404))
async def chats(session_id: OwnedSession, res: Resources, limit: Limit = 50, cursor: Cursor = None) -> JSON:
    """The session's chats, most recent first."""
    page = await reads.chats(res, session_id, limit, cursor)
    return {"items": [chat_json(c) for c in page.items], "nextCursor": page.next_cursor}


@router.get(
    "/sessions/{id}/chats/{chatId}/messages", response_model=MessagePage, responses=error_responses(400, 404)
)
async def messages(
    session_id: OwnedSession, res: Resources, chat_id: ChatId, limit: Limit = 50, cursor: Cursor = None
) -> JSON:
    """A chat's messages, newest first."""
    page = await reads.messages(res, session_id, to_jid(chat_id), limit, cursor)
    return {"items": [message_json(m) for m in page.items], "nextCursor": page.next_cursor}


@router.get(
    "/sessions/{id}/chats/{chatId}/messages/{messageId}/media",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The media bytes, with their Content-Type and Content-Length",
        },
        **error_responses(400, 404, 409, 413, 502, 504),
    },
)
async def media(
    session_id: OwnedSession, res: Resources, chat_id: ChatId, message_id: MessageId
) -> StreamingResponse:
    """Download a message's media, streamed (409 while the session is not connected, 413 above
    MAX_MEDIA_BYTES: refused before anything is downloaded; 502 if the file fails its integrity checks,
    503 if WhatsApp's media server is unreachable, 504 if it stalls)."""
    download = await res.actors.media(session_id, to_jid(chat_id), message_id)
    head = download.head
    # Attachment + nosniff: a sender chooses the mimetype; it must never render as a page of ours.
    headers = {
        "Content-Disposition": "attachment",
        "X-Content-Type-Options": "nosniff",
        "Content-Length": str(head.size),
    }
    return StreamingResponse(download.chunks(), media_type=head.mimetype, headers=headers)


@router.get(
    "/sessions/{id}/chats/{chatId}/picture",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}},
            "description": "The chat's picture (or, with our own number as chatId, the session's own)",
        },
        **error_responses(400, 404, 409, 504),
    },
)
async def picture(session_id: OwnedSession, res: Resources, chat_id: ChatId) -> Response:
    """A chat's picture, fetched from WhatsApp on first use and cached in the store (served from there
    whatever the session's process is doing); refreshed when WhatsApp's link expires. 404
    `chat_not_found` for a chat this session does not have, `picture_not_available` when the chat has no
    picture (or hides it); 409 while a picture never fetched needs the session connected."""
    data, mimetype = await reads.picture(res, session_id, to_jid(chat_id))
    headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
    return Response(content=data, media_type=mimetype, headers=headers)
