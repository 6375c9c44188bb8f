"""The `/ws` WebSocket: who may connect, the snapshot on open, then live frames from the hub.

Authentication: `X-API-Key` + `X-User-Id` headers (servers), or `?token=` from POST /ws-token
(browsers cannot set headers). A refused client is accepted and closed at once with 1008 (policy
violation) and a reason, so that a browser sees why. A client too slow for its queue is closed with
1013 (try again later); it reconnects and gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from actors.errors import WaError
from api.auth import api_key_matches
from api.deps import check_user_id
from api.hub import Subscriber
from api.resources import ApiResources
from persistence import repo

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
SEND_TIMEOUT_S = 10.0


def authenticate(ws: WebSocket, res: ApiResources) -> str | None:
    """The user this socket acts for, or None when it presents no valid credentials."""
    token = ws.query_params.get("token")
    if token is not None:
        return res.tokens.verify(token)
    if not api_key_matches(res.settings, ws.headers.get("x-api-key")):
        return None
    try:
        return check_user_id(ws.headers.get("x-user-id"))
    except WaError:
        return None


async def _refuse(ws: WebSocket, reason: str) -> None:
    await ws.accept()
    await ws.close(POLICY_VIOLATION, reason)


async def serve(ws: WebSocket, res: ApiResources) -> None:
    user = authenticate(ws, res)
    if user is None:
        await _refuse(ws, "invalid credentials or expired token")
        return
    session_filter = ws.query_params.get("sessionId")
    try:
        sessions = await res.db.run(repo.list_sessions, user)
    except WaError:
        sessions = []  # the database is down: live frames still flow; the snapshot is empty
    if session_filter is not None and session_filter not in {s.id for s in sessions}:
        await _refuse(ws, "unknown session")
        return
    await ws.accept()
    sub = res.hub.subscribe(user, session_filter, sessions)
    try:
        for frame in await res.hub.snapshot(sub, sessions):
            await asyncio.wait_for(ws.send_text(frame), SEND_TIMEOUT_S)
        await _pump(ws, sub)
    except (WebSocketDisconnect, TimeoutError, OSError, RuntimeError) as err:
        log.debug("WebSocket of user %s ended: %s", user, type(err).__name__)
    finally:
        res.hub.unsubscribe(sub)
        await _close(ws, sub.close_code)


async def _pump(ws: WebSocket, sub: Subscriber) -> None:
    """Send queued frames until the client leaves, is dropped, or stops taking frames."""
    writer = asyncio.create_task(_write(ws, sub))
    reader = asyncio.create_task(_read_until_closed(ws))
    dropped = asyncio.create_task(sub.dropped.wait())
    tasks = {writer, reader, dropped}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("WebSocket of user %s: %r", sub.user_id, task.exception())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _write(ws: WebSocket, sub: Subscriber) -> None:
    while True:
        frame = await sub.queue.get()
        await asyncio.wait_for(ws.send_text(frame), SEND_TIMEOUT_S)


async def _read_until_closed(ws: WebSocket) -> None:
    # Clients have nothing to say; reading is how a close from their side is noticed.
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(ws: WebSocket, code: int) -> None:
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code), 2.0)
