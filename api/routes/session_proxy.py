"""A number's proxy: `PUT /sessions/{id}/proxy` sets, changes or removes it (`POST /sessions` takes one)."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from api import reads
from api.deps import OwnedSession, Resources, UserId
from api.errors import error_responses
from api.schemas import ProxyIn, SessionOut
from kernel.errors import WaError
from kernel.proxy import ProxySettings, parse_proxy
from kernel.wire import JSON, session_json
from persistence import session_proxy

log = logging.getLogger(__name__)

router = APIRouter(tags=["sessions"])


def proxy_of(text: str | None) -> ProxySettings | None:
    """The checked proxy of a request body (None: none); 422 `invalid_proxy` otherwise."""
    return parse_proxy(text) if text is not None else None


@router.put("/sessions/{id}/proxy", response_model=SessionOut, responses=error_responses(400, 404))
async def set_proxy(body: ProxyIn, session_id: OwnedSession, res: Resources, user: UserId) -> JSON:
    """Set, change or (with null) remove the number's proxy. A running session dials again through it at
    once (a paired one comes back without a scan); one waiting for a scan uses it for its next round.
    The password is stored and used, never shown: `proxy` in the answer has none."""
    proxy = proxy_of(body.proxy)
    if not await res.db.run(session_proxy.set_proxy, user, session_id, proxy):
        return session_json(await reads.session_status(res, user, session_id))  # the same: nothing to do
    try:
        await res.actors.use_proxy(session_id)
    except WaError as err:
        # The row holds the new proxy: whichever process starts next dials through it.
        log.info("session %s: proxy saved; its process was not reached (%s)", session_id, err.code)
    return session_json(await reads.session_status(res, user, session_id))
