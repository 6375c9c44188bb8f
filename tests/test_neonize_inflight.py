"""`GoInFlight` alone: Go's client is never stopped while one of its calls is still in Go (even one whose
caller gave up), nor while Go is still creating it; and a stop that cannot happen in time gives up within
its budget instead of hanging the session's way out. (Go's client maps are unlocked: either would abort
the process. tests/test_neonize_stop.py stops a real Go client.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from actors.clients.neonize.inflight import STOP_BUDGET_S, GoInFlight

pytestmark = pytest.mark.timeout(30)


class Native:
    """What `GoInFlight` asks of neonize's client: `stop()`, here recording when it ran."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def stop(self) -> None:
        self.log.append("stop")


async def test_a_call_in_go_settles_before_go_is_stopped_even_when_its_caller_gave_up() -> None:
    log: list[str] = []
    inflight = GoInFlight(Native(log), "s1")
    release = asyncio.Event()

    async def in_go() -> str:
        await release.wait()
        log.append("call returned")
        return "done"

    caller = asyncio.ensure_future(inflight.call(in_go))
    await asyncio.sleep(0)
    caller.cancel()  # the caller stops waiting; the call is still in Go
    stopping = asyncio.ensure_future(inflight.stop_go(None, True, lambda: True))
    await asyncio.sleep(0.1)
    assert log == []  # no Stop while the call is in Go
    release.set()
    await stopping

    assert log == ["call returned", "stop"]
    assert caller.cancelled()


async def test_go_still_creating_the_client_is_left_alone_within_the_budget() -> None:
    log: list[str] = []
    inflight = GoInFlight(Native(log), "s2")
    creating: asyncio.Future[Any] = asyncio.get_running_loop().create_future()  # Neonize() never returns

    started = time.monotonic()
    await inflight.stop_go(creating, True, lambda: False)  # no callback from Go yet
    took = time.monotonic() - started

    assert log == []
    assert took <= STOP_BUDGET_S
    creating.cancel()


async def test_a_client_go_never_started_needs_no_stop() -> None:
    log: list[str] = []

    await GoInFlight(Native(log), "s3").stop_go(None, False, lambda: False)

    assert log == []
