"""Pairing by phone number right after a session is created: wait (bounded) for its first QR round."""

from __future__ import annotations

import asyncio
import logging
import time

from api.handles import SessionActors
from kernel.domain import SessionStatus
from kernel.errors import WaError

log = logging.getLogger(__name__)

READY_BUDGET_S = 10.0
_POLL_S = 0.25


async def code_when_ready(
    actors: SessionActors, session_id: str, phone: str, budget_s: float = READY_BUDGET_S
) -> str | None:
    """The pairing code for `phone` once the new session's actor shows a QR; None if not within budget.

    A code can only be issued during a pairing round, which starts a moment after the actor does. On
    None the client asks again with POST /sessions/{id}/pairing-code.
    """
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        try:
            view = await actors.status(session_id, timeout_s=2.0)
            if view.status == SessionStatus.QR_READY:
                return await actors.pairing_code(session_id, phone, timeout_s=5.0)
        except WaError as err:
            log.debug("session %s: not ready for a pairing code yet (%s)", session_id, err.code)
        await asyncio.sleep(_POLL_S)
    log.info("session %s: no pairing round within %.0f s; the client will ask again", session_id, budget_s)
    return None
