"""Live events: WebSocket tokens for browsers, and the `/ws` endpoint itself (see `api.ws`)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, WebSocket

from api import ws
from api.deps import Resources, UserId, resources
from api.errors import error_responses
from api.schemas import WsTokenOut
from kernel.wire import JSON, iso

router = APIRouter(tags=["events"])


@router.post("/ws-token", response_model=WsTokenOut, responses=error_responses(400))
async def ws_token(res: Resources, user: UserId) -> JSON:
    """A short-lived token bound to the user, for `GET /ws?token=...` from a browser."""
    token, exp = res.tokens.mint(user)
    return {"token": token, "expiresAt": iso(datetime.fromtimestamp(exp, UTC))}


socket_router = APIRouter()


@socket_router.websocket("/ws")
async def events(socket: WebSocket) -> None:
    """Frames `{type: qr|status|message, sessionId, ...}`; one `status` per session (and the `qr`) on open."""
    await ws.serve(socket, await resources(socket))
