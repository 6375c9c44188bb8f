"""The client's calls into Go while they run, and stopping Go's client around them.

Go's client maps are unlocked: running Go's `Stop` while another FFI call is in flight, or while
`Neonize()` is still creating the client, can abort the whole process. So every call is tracked until its
thread returns (even when its caller gave up), and `stop_go` waits for them, within its budget, before
stopping Go; it leaves a client that Go is still creating alone (the process must exit instead).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

STOP_BUDGET_S = 2.5  # the session actor gives stop() 3 s


class GoInFlight:
    """The FFI calls of one neonize client that have not returned yet, and the way to stop Go's client."""

    def __init__(self, native: Any, session_id: str) -> None:
        self._native = native
        self._sid = session_id
        self._calls: set[asyncio.Future[Any]] = set()

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """One FFI call, tracked until its thread returns even if the caller gives up (`stop_go` waits)."""
        future = asyncio.ensure_future(fn(*args, **kwargs))
        self._calls.add(future)
        future.add_done_callback(self._calls.discard)
        future.add_done_callback(retrieve)
        return await asyncio.shield(future)

    async def stop_go(
        self, connect_task: asyncio.Future[Any] | None, connect_started: bool, go_live: Callable[[], bool]
    ) -> None:
        """Stop Go's client once the calls in flight settle, within `STOP_BUDGET_S`; `go_live` says whether
        Go has registered the client yet (it may while this waits)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_BUDGET_S
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=STOP_BUDGET_S / 3)
        if not connect_started or (connect_task is None and not go_live()):
            log.info("session %s: client stopped (Go never started)", self._sid)
            return
        if connect_task is not None and not connect_task.done() and not go_live():
            await asyncio.wait({connect_task}, timeout=max(0.0, deadline - loop.time()) / 2)
            if not connect_task.done() and not go_live():
                log.warning("session %s: Go is still creating the client; not stopping it mid-way", self._sid)
                return
        stopping = asyncio.ensure_future(self._native.stop())
        stopping.add_done_callback(retrieve)
        done, _ = await asyncio.wait({stopping}, timeout=max(0.1, deadline - loop.time()))
        if not done:
            log.warning("session %s: Go's stop did not return in time; the process must exit", self._sid)
            return
        log.info("session %s: client stopped", self._sid)


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a Go call's outcome as seen: its caller may have stopped waiting (timeout, cancellation)."""
    if not future.cancelled():
        future.exception()
