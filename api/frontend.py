"""The front end's part of the app: routes, error handlers, middleware, and the resources it serves with.

`api.app.create_app` calls `install` once and enters `serving` in its lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import require_admin, require_api_key
from api.errors import install_error_handlers
from api.limits import BodyLimitMiddleware
from api.metrics import Metrics, MetricsMiddleware
from api.resources import open_resources
from api.routes import (
    chat_actions,
    console,
    contacts,
    events,
    groups,
    inbox,
    keys,
    messages,
    operations,
    ops,
    qr,
    search,
    send,
    send_kinds,
    session_proxy,
    sessions,
    users,
    webhooks,
)
from kernel.domain import Backend
from kernel.settings import Settings

DESCRIPTION = """\
REST and WebSocket API of the WhatsApp bridge for a web inbox.

Every route but `/health`, `/metrics`, `/docs` and `/openapi.json` needs `X-API-Key`. With the admin key
(`WHATSAPP_BRIDGE_API_KEY`) user routes also need `X-User-Id`; with a user's own key (`POST
/users/{userId}/keys`) they act as that user without it (another user's `X-User-Id` is 403
`user_mismatch`), and `/ops/*`, `/simulator/*` and `/users/{userId}/keys` are 403 `admin_only`.
Errors are `{"error": {"code", "message"}}`; a 503 carries `Retry-After`.

**WebSocket `/ws`**: authenticate with the `X-API-Key` and `X-User-Id` headers, or `?token=` from
`POST /ws-token`; `?sessionId=` limits the frames to one session. Frames are JSON
`{"type": "qr" | "status" | "message" | "chat" | "message_update" | "presence" | "call" |
"session_deleted", "sessionId", ...}` with the bodies of the Redis channels: `qr` `{qr, expiresAt,
roundsLeft}` (roundsLeft: pairing rounds after this one), `status` `{status, reason, phone,
displayName}`, `message` `{chatId, message}`, `chat` `{chatId, unreadCount, name}` (a chat read here or
on the phone, named, or added or changed by a history sync),
`session_deleted` `{}` (the session was deleted: drop it),
`message_update` `{chatId, messageId, change: reaction|edit|revoke|receipt, message}`, `presence`
`{chatId, state: composing|recording|paused|available|unavailable, lastSeen}` (rate-limited per chat),
`call` `{chatId, callId, timestamp, rejected}` (someone called; declined with REJECT_CALLS);
their schemas are `ChatFrame`, `MessageUpdateFrame`, `PresenceFrame` and `CallFrame` (also under
`x-websocket-frames`).
On open the socket gets one `status` frame per session (and the `qr` showing). A refused socket is
closed with 1008; a client too slow to keep up is closed with 1013 and should reconnect. Every frame
carries a `cursor`: reconnect with `?cursor=<last one>` to get the frames missed meanwhile (once, in
order, within the last 100 000 events); older, a `{"type": "resync"}` frame says to reload. Without the
database the handshake is refused with 503 and `Retry-After`.
"""


def install(app: FastAPI, settings: Settings) -> None:
    """Add the routes, error handlers and middleware (metrics outermost, then body limits)."""
    metrics = Metrics()
    app.state.metrics = metrics
    app.description = DESCRIPTION
    keyed = [Depends(require_api_key)]
    routers = (
        sessions,
        session_proxy,
        qr,
        messages,
        search,
        chat_actions,
        send,
        send_kinds,
        contacts,
        groups,
        inbox,
        users,
        events,
        keys,
        webhooks,
    )
    for module in routers:
        app.include_router(module.router, dependencies=keyed)
    admin = [Depends(require_admin)]
    app.include_router(keys.admin_router, dependencies=admin)
    chat_actions.document_frames(app)
    if settings.wa_backend == Backend.SIMULATED:
        from api.routes import simulator, simulator_groups, simulator_inbox

        app.include_router(simulator.router, dependencies=admin)
        app.include_router(simulator_inbox.router, dependencies=admin)
        app.include_router(simulator_groups.router, dependencies=admin)
    app.include_router(events.socket_router)
    app.include_router(ops.router)
    app.include_router(operations.router)
    if settings.console_enabled:
        app.include_router(console.router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_media_bytes=settings.max_media_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)


@asynccontextmanager
async def serving(
    app: FastAPI, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[None]:
    """The front end's resources (event hub, actor handles, ...) for the lifetime of the app."""
    async with open_resources(settings, sessions, app.state.metrics) as resources:
        app.state.api = resources
        yield
