"""neonize's Go calls on the adapter's own bounded pool (`gocalls.GoCalls`), against the real Go library.

A real Go call that hangs: `GetAllDevices` opens whatsmeow's store through a FaultProxy in front of the
test PostgreSQL, stalled, so lib/pq waits in Go with no deadline. `GetVersion` is a real call that
returns at once. Neither touches Go's client maps (no uuid), so they are safe in this process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from actors.clients.neonize import runtime
from actors.clients.neonize.gocalls import GoCalls
from kernel.errors import ClientTimeout
from persistence.migrate import auth_dsn
from tests.faultproxy import FaultProxy
from tests.raykit import eventually

pytestmark = pytest.mark.timeout(60)

BOUND_S = 1.0


@pytest.fixture
def proxy(database_url: str) -> Iterator[FaultProxy]:
    url = urlsplit(database_url)
    with FaultProxy(url.hostname or "127.0.0.1", url.port or 5432) as running:
        yield running


def go() -> tuple[object, object]:
    lib = runtime.load()
    return lib.client.gocode, lib.client.func_callback_bytes2(lib.client.log_whatsmeow)


async def wait_idle(calls: GoCalls) -> None:
    async def busy() -> int:
        return calls.busy

    await eventually(busy, lambda n: n == 0, timeout=20, every=0.05)


async def test_a_hung_go_call_times_out_within_its_bound_and_others_still_run(
    proxy: FaultProxy, database_url: str
) -> None:
    gocode, log_cb = go()
    calls = GoCalls(gocode, slots=2, timeouts={"GetAllDevices": BOUND_S})
    dsn = proxy.url_for(auth_dsn(database_url)).encode()
    assert isinstance(await calls.GetAllDevices(dsn, log_cb), bytes)  # the store answers through the proxy

    proxy.stall()
    try:
        started = time.monotonic()
        with pytest.raises(ClientTimeout):
            await calls.GetAllDevices(dsn, log_cb)
        assert BOUND_S <= time.monotonic() - started < BOUND_S + 5.0  # at its bound; load only delays
        # The hung call keeps its thread and its slot; another call still runs on the other one.
        assert calls.busy == 1
        assert await calls.GetVersion() == runtime.load().version.encode()

        with pytest.raises(ClientTimeout):
            await calls.GetAllDevices(dsn, log_cb)
        # Every slot is hung: a new call fails at once instead of queueing behind them.
        started = time.monotonic()
        with pytest.raises(ClientTimeout):
            await calls.GetVersion()
        assert time.monotonic() - started < BOUND_S / 2  # queued behind them, it would take BOUND_S
    finally:
        proxy.restore()
    # Go returns once the database answers: the slots come back by themselves.
    await wait_idle(calls)
    assert await calls.GetVersion() == runtime.load().version.encode()


async def test_many_hung_calls_never_hold_more_threads_than_slots(
    proxy: FaultProxy, database_url: str
) -> None:
    gocode, log_cb = go()
    calls = GoCalls(gocode, slots=3, timeouts={"GetAllDevices": 0.3})
    dsn = proxy.url_for(auth_dsn(database_url)).encode()
    proxy.stall()
    try:
        outcomes = await asyncio.gather(
            *(calls.GetAllDevices(dsn, log_cb) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(o, ClientTimeout) for o in outcomes)
        assert calls.busy == 3  # only three ever reached Go; seven were refused at once
    finally:
        proxy.restore()
    await wait_idle(calls)
