"""Calls to a number: each is a `call` frame; with REJECT_CALLS the session declines it, and with
REJECT_CALLS_MESSAGE also answers the caller with that text (a send like any other: paced, stored,
pushed as a `message` frame). A call that cannot be declined (the connection dropped) is still pushed,
with `rejected: false`, and logged.
"""

from __future__ import annotations

import logging

from actors.session_sends import Sends
from actors.session_state import SessionState
from kernel.errors import WaError
from kernel.events import CallOffered
from kernel.wire import call_payload

log = logging.getLogger(__name__)


class IncomingCalls:
    def __init__(self, state: SessionState, sends: Sends) -> None:
        self._state = state
        self._sends = sends

    def offered(self, call: CallOffered) -> None:
        """Handle a call in the background: declining it must not hold up the events behind it."""
        self._state.tasks.spawn(self._answer(call), f"call {call.call_id}")

    async def _answer(self, call: CallOffered) -> None:
        session, config = self._state, self._state.config
        rejected = False
        if config.reject_calls:
            try:
                await session.timed(session.client_if_connected().reject_call(call.caller, call.call_id))
                rejected = True
            except WaError as err:
                log.warning(
                    "session %s: could not decline call %s: %s", session.session_id, call.call_id, err
                )
        log.info(
            "session %s: call %s from %s (declined: %s)",
            session.session_id,
            call.call_id,
            call.chat_id,
            rejected,
        )
        await session.bus.publish(
            "call", call_payload(call.chat_id, call.call_id, call.at, rejected=rejected)
        )
        if rejected and config.reject_calls_message:
            try:
                await self._sends.send_text(call.chat_id, config.reject_calls_message)
            except WaError as err:
                log.warning("session %s: could not answer call %s: %s", session.session_id, call.call_id, err)
