"""Acting on a chat or a message: read a chat, react, edit, delete for everyone, typing.

Each is served by the session's actor (`actors.session_inbox`); the change also reaches every open
WebSocket of the user as a `chat` or `message_update` frame once it is stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Response, status

from api.deps import OwnedSession, Resources
from api.errors import error_responses
from api.routes.messages import ChatId, MessageId
from api.schemas import (
    ApiModel,
    CallFrame,
    ChatFrame,
    ChatReadOut,
    EditIn,
    ErrorOut,
    MessageOut,
    MessageUpdateFrame,
    PresenceFrame,
    ReactionIn,
    TypingIn,
)
from kernel.ids import to_jid
from kernel.wire import JSON, message_json

router = APIRouter(tags=["messages"])

_MESSAGE = "/sessions/{id}/chats/{chatId}/messages/{messageId}"


_NOT_FOUND = (
    "No such session for this user, or no such message in that chat"
    " (`session_not_found`, `message_not_found`)"
)
_NOT_CONNECTED = "The session is not connected (`session_not_connected`)"


def _responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route: 404, 409, 502, 504 and the always-possible ones, some described."""
    out = error_responses(404, 409, 502, 504, *described)
    texts = {404: _NOT_FOUND, 409: _NOT_CONNECTED, **described}
    for code, text in texts.items():
        out[code] = {"model": ErrorOut, "description": text}
    return out


@router.post(
    "/sessions/{id}/chats/{chatId}/read",
    response_model=ChatReadOut,
    responses=_responses({}),
)
async def read_chat(session_id: OwnedSession, res: Resources, chat_id: ChatId) -> JSON:
    """Mark the chat read up to its newest message: the contact gets read receipts (blue ticks), its
    `unreadCount` becomes 0, and a `chat` frame tells every open console."""
    jid, receipts = await res.actors.read_chat(session_id, to_jid(chat_id))
    return {"chatId": jid, "unreadCount": 0, "readReceipts": receipts}


@router.post(
    _MESSAGE + "/reaction",
    response_model=MessageOut,
    responses=_responses(
        {
            404: _NOT_FOUND,
            409: _NOT_CONNECTED,
            422: 'Not one emoji (or ""), or the message was deleted for everyone (`invalid_request`)',
        }
    ),
)
async def react(
    session_id: OwnedSession, res: Resources, chat_id: ChatId, message_id: MessageId, body: ReactionIn
) -> JSON:
    """React to a message (yours or theirs) with one emoji; `""` removes your reaction. Answers the message
    with its reactions; a `message_update` frame (`change: reaction`) follows."""
    message = await res.actors.react(session_id, to_jid(chat_id), message_id, body.emoji)
    return message_json(message)


@router.patch(
    _MESSAGE,
    response_model=MessageOut,
    responses=_responses(
        {
            404: _NOT_FOUND,
            409: _NOT_CONNECTED,
            422: "`not_own_message` (only your own messages), `not_editable` (only text messages), "
            "`edit_window_closed` (WhatsApp takes edits for 15 minutes after sending), `invalid_request`",
        }
    ),
)
async def edit(
    session_id: OwnedSession, res: Resources, chat_id: ChatId, message_id: MessageId, body: EditIn
) -> JSON:
    """Edit the text of your own text message (within 15 minutes of sending). It keeps its id and gets
    `editedAt`; a `message_update` frame (`change: edit`) follows."""
    message = await res.actors.edit(session_id, to_jid(chat_id), message_id, body.text)
    return message_json(message)


@router.delete(
    _MESSAGE,
    response_model=MessageOut,
    responses=_responses(
        {
            404: _NOT_FOUND,
            409: _NOT_CONNECTED,
            422: "`not_own_message`: only your own messages can be deleted for everyone",
        }
    ),
)
async def revoke(session_id: OwnedSession, res: Resources, chat_id: ChatId, message_id: MessageId) -> JSON:
    """Delete your own message for everyone. It becomes `type: revoked` with no text or media (also gone
    from the store); a `message_update` frame (`change: revoke`) follows. Deleting it again changes
    nothing."""
    message = await res.actors.revoke(session_id, to_jid(chat_id), message_id)
    return message_json(message)


@router.post(
    "/sessions/{id}/chats/{chatId}/typing",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_responses(
        {
            404: "No such session for this user (`session_not_found`)",
            422: "`state` is not composing, recording or paused (`invalid_request`)",
            429: "`rate_limited`: the state changed again within 0.5 s of the last one sent; see Retry-After",
        }
    ),
)
async def typing(session_id: OwnedSession, res: Resources, chat_id: ChatId, body: TypingIn) -> Response:
    """Show the contact that you are typing (`composing`), recording a voice note, or stopped (`paused`).
    Coalesced: the same state again within 10 s is not sent to WhatsApp again (send `composing` as often
    as you like while the user types)."""
    await res.actors.typing(session_id, to_jid(chat_id), body.state)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


FRAME_MODELS: dict[str, type[ApiModel]] = {
    "chat": ChatFrame,
    "message_update": MessageUpdateFrame,
    "presence": PresenceFrame,
    "call": CallFrame,
}


def document_frames(app: FastAPI) -> None:
    """Add the WebSocket frame bodies to the OpenAPI document's schemas (no route returns them whole)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in FRAME_MODELS.values():
            body = model.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}", mode="serialization"
            )
            for name, sub in body.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[model.__name__] = body
        schema["x-websocket-frames"] = {
            kind: {"$ref": f"#/components/schemas/{model.__name__}"} for kind, model in FRAME_MODELS.items()
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
