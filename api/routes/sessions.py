"""The user's WhatsApp numbers: list, create, status, delete, pairing by code, reconnect."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from fastapi import APIRouter, Response, status

from api import reads
from api.deps import OwnedSession, Resources, UserId
from api.errors import error_responses
from api.handles import ActorUnreachable
from api.pairing import code_when_ready
from api.routes.session_proxy import proxy_of
from api.schemas import CreateSessionIn, PairingCodeIn, PairingCodeOut, ReconnectOut, SessionOut
from kernel.errors import SessionNotFound, SessionUnavailable, WaError
from kernel.wire import JSON, session_json
from persistence import repo

log = logging.getLogger(__name__)

router = APIRouter(tags=["sessions"])

ENSURE_TIMEOUT_S = 10.0
DESTROY_TIMEOUT_S = 40.0


@router.get("/sessions", response_model=list[SessionOut], responses=error_responses(400))
async def list_sessions(res: Resources, user: UserId) -> list[JSON]:
    """The user's sessions by slot, as last recorded (`qr` and `pairingCode` are in the status route)."""
    return [session_json(view) for view in await res.db.run(repo.list_sessions, user)]


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionOut,
    responses=error_responses(400, 409),
)
async def create_session(body: CreateSessionIn, res: Resources, user: UserId) -> JSON:
    """Add a WhatsApp number in a slot; its actor starts and shows a QR (or issues a pairing code)."""
    phone = repo.normalize_phone(body.pairing_phone) if body.pairing_phone is not None else None
    proxy = proxy_of(body.proxy)
    settings = res.settings
    view = await res.db.run(repo.create_session, user, body.slot, settings.max_sessions_per_user, proxy=proxy)
    try:
        await res.actors.ensure_session(view.id, timeout_s=ENSURE_TIMEOUT_S)
    except WaError as err:
        # The row exists: the registry's next reconcile pass starts the actor anyway.
        log.warning("session %s: registry not reached (%s); reconcile will start it", view.id, err.code)
    if phone is not None:
        code = await code_when_ready(res.actors, view.id, phone)
        view = dataclasses.replace(view, pairing_code=code)
    return session_json(view)


@router.get("/sessions/{id}/status", response_model=SessionOut, responses=error_responses(400, 404))
async def session_status(session_id: OwnedSession, res: Resources, user: UserId) -> JSON:
    """The session as stored, with the QR code and pairing code its process shows now.

    Answered from PostgreSQL whatever the session's process is doing: `live` says whether it is up and
    holds the WhatsApp connection (while it is not, `qr` and `pairingCode` are null and `status` is as
    last stored). 503 only when the database cannot answer.
    """
    return session_json(await reads.session_status(res, user, session_id))


@router.delete("/sessions/{id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(400, 404))
async def delete_session(session_id: OwnedSession, res: Resources, user: UserId) -> Response:
    """Unlink the device, stop the actor, delete its keys and stored messages; the user's open
    WebSockets get a `session_deleted` frame."""
    existed = await res.actors.destroy_session(session_id, timeout_s=DESTROY_TIMEOUT_S)
    res.owners.forget(session_id)
    if not existed:  # deleted meanwhile, e.g. through another API process
        raise SessionNotFound()
    await res.hub.session_deleted(user, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/sessions/{id}/pairing-code", response_model=PairingCodeOut, responses=error_responses(400, 404, 409)
)
async def pairing_code(body: PairingCodeIn, session_id: OwnedSession, res: Resources) -> dict[str, Any]:
    """An 8-character code to type on the phone (Linked devices → Link with phone number)."""
    phone = repo.normalize_phone(body.phone)
    code = await res.actors.pairing_code(session_id, phone)
    return {"code": code}


@router.post(
    "/sessions/{id}/reconnect",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReconnectOut,
    responses=error_responses(400, 404, 409),
)
async def reconnect(session_id: OwnedSession, res: Resources) -> dict[str, Any]:
    """Start pairing afresh after `logged_out` or `qr_timeout`; new QR codes follow as events."""
    try:
        await res.actors.restart_pairing(session_id)
    except ActorUnreachable:
        raise
    except SessionUnavailable:
        pass  # the actor's way of saying "a fresh process is starting"
    return {"status": "connecting"}
