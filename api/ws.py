"""The `/ws` WebSocket: who may connect, the snapshot on open, the frames missed, then live frames.

Authentication: `X-API-Key` + `X-User-Id` headers (servers; a user's own key needs no `X-User-Id`), or
`?token=` from POST /ws-token (browsers cannot set headers). A refused client is accepted and closed at
once with 1008 (policy violation) and a reason, so that a browser sees why. A socket opened with a token
is closed with 1008 "token expired" when its token expires (one opened with a user's own key after
WS_TOKEN_TTL_S), and gets no frame after that: the token is the only proof that its user is still
allowed in, so a socket cannot outlive it. The client reconnects with a fresh token (or its key, checked
again) and its last cursor, and misses nothing. A client too slow for its queue is closed
with 1013 (try again later); it reconnects with its last cursor.

Every frame carries a `cursor`. `?cursor=<the last one received>` resumes: after the snapshot come the
frames of the user's sessions logged after that cursor, once, in order, then live ones, with no gap and
no duplicate between the two (read from the user's own index streams and sent as read, `api.hub_replay`;
a storm of resumes takes turns). The window is the event log's (`kernel.wire.EVENTS_RETAINED` entries
across all sessions, 100 000 by default: about 17 minutes at 100 events/s); a cursor older than that, or
not one of ours, or one that cannot be checked while Redis is down, gets a single
`{type: "resync", sessionId, reason, cursor}` frame instead: reload over REST, then go on from that frame.

When the user's sessions cannot be read (PostgreSQL down, or any other failure), the handshake is refused
with an HTTP 503 `service_unavailable` response carrying `Retry-After`, as the REST routes answer; a
server without the denial-response extension accepts and closes with 1013 (try again later) instead.
Never a 500, never an empty snapshot that looks like "no sessions".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.deps import acting_user
from api.errors import error_response
from api.hub import TRY_AGAIN_LATER, Subscriber
from api.resources import ApiResources
from api.unavailable import RETRY_AFTER_S, as_wa_error, describe
from kernel.errors import BadRequest, Forbidden, InvalidInput, ServiceUnavailable, Unauthorized
from persistence import reads

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
SEND_TIMEOUT_S = 10.0
# How long a resuming socket waits, right after the API started, for the event log to be first read.
READY_WAIT_S = 5.0


async def authenticate(ws: WebSocket, res: ApiResources) -> tuple[str, float | None] | None:
    """The user this socket acts for and when its credentials expire (None with the admin key), or None
    when it presents no valid credentials. A user's own key acts as its user (X-User-Id optional, and
    refused when it names another user); its socket lasts WS_TOKEN_TTL_S, as a token's does, so that a
    revoked key's socket ends within that time (the reconnect checks the key again)."""
    token = ws.query_params.get("token")
    if token is not None:
        return res.tokens.check(token)
    try:
        found = await res.keys.identify(ws.headers.get("x-api-key"))
        expires_at = None if found.admin else time.time() + res.settings.ws_token_ttl_s
        return acting_user(found, ws.headers.get("x-user-id")), expires_at
    except (Unauthorized, BadRequest, InvalidInput, Forbidden):
        return None


async def _refuse(ws: WebSocket, reason: str) -> None:
    await ws.accept()
    await ws.close(POLICY_VIOLATION, reason)


async def _unavailable(ws: WebSocket, err: Exception) -> None:
    """Refuse the handshake as REST would answer: 503 + Retry-After (or 1013 without denial responses)."""
    mapped = as_wa_error(err)
    if mapped is None:
        log.error("WebSocket handshake failed: %s", describe(err))
        mapped = ServiceUnavailable()
    else:
        log.warning("WebSocket handshake refused: %s (%s)", mapped.code, describe(err))
    retry_after = str(getattr(mapped, "retry_after", None) or RETRY_AFTER_S)
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        response = error_response(503, ServiceUnavailable.code, mapped.message, {"Retry-After": retry_after})
        await ws.send_denial_response(response)
        return
    await ws.accept()
    await ws.close(TRY_AGAIN_LATER, "service unavailable, try again shortly")


async def serve(ws: WebSocket, res: ApiResources) -> None:
    # A few handshakes at a time: a reconnect storm's key checks and sessions reads take turns, so the
    # event loop and the database pool keep room for everything else (/health, REST).
    async with res.handshakes:
        try:
            found = await authenticate(ws, res)
        except Exception as err:  # the database could not say whether a user's key is valid
            await _unavailable(ws, err)
            return
        if found is None:
            await _refuse(ws, "invalid credentials or expired token")
            return
        user, expires_at = found
        try:
            sessions = await res.db.run(reads.sessions_shown, user)
        except Exception as err:
            await _unavailable(ws, err)
            return
    session_filter = ws.query_params.get("sessionId")
    cursor = ws.query_params.get("cursor")
    if session_filter is not None and session_filter not in {s.id for s in sessions}:
        await _refuse(ws, "unknown session")
        return
    await ws.accept()
    if cursor is not None:
        await res.hub.ready(READY_WAIT_S)
    sub = res.hub.subscribe(user, session_filter, sessions, cursor=cursor)
    expiry = None
    if expires_at is not None:
        delay = max(0.0, expires_at - time.time())
        expiry = asyncio.get_running_loop().call_later(delay, sub.drop, POLICY_VIOLATION)
    try:
        for frame in res.hub.snapshot(sub, sessions):
            if sub.dropped.is_set():
                break
            await asyncio.wait_for(ws.send_text(frame), SEND_TIMEOUT_S)
        if cursor is not None:
            # Sent as read: the socket's pace is the replay's, and the window is never held whole.
            async with contextlib.aclosing(res.hub.replay(sub, cursor, [s.id for s in sessions])) as missed:
                async for frame in missed:
                    if sub.dropped.is_set():
                        break
                    await asyncio.wait_for(ws.send_text(frame), SEND_TIMEOUT_S)
        if not sub.dropped.is_set():
            await _pump(ws, sub)
    except (WebSocketDisconnect, TimeoutError, OSError, RuntimeError) as err:
        log.debug("WebSocket of user %s ended: %s", user, type(err).__name__)
    finally:
        if expiry is not None:
            expiry.cancel()
        res.hub.unsubscribe(sub)
        reason = "token expired" if sub.close_code == POLICY_VIOLATION else ""
        await _close(ws, sub.close_code, reason)


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


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code, reason), 2.0)
