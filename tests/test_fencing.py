"""Fencing (`actors.lease`): two processes never both hold one number's WhatsApp connection.

Session state machines without Ray first (the simulated client, real PostgreSQL and Redis, a recorded
process exit in place of Ray's restart); then real detached Ray actors, one of them started by hand as a
second actor for a live session, and one frozen with SIGSTOP while the other takes over.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.registry import start_registry
from actors.registry_config import session_actor_class, session_actor_options
from actors.session import SessionCore
from kernel.domain import Reason, SessionStatus
from kernel.errors import LeaseLost, SessionUnavailable
from kernel.events import Disconnected
from kernel.settings import asyncpg_dsn
from persistence.session_store import SessionStore
from tests.raykit import (
    eventually,
    fetchval,
    handle,
    insert_session,
    pair,
    registry_config,
    wait_status,
)
from tests.sessionkit import Exits, Factory, session_factory, session_row
from tests.sessionkit import wait_status as wait_core_status

pytestmark = pytest.mark.timeout(120)

CONNECTED = SessionStatus.CONNECTED
LEASE_S = 3.0  # short leases: a takeover after a silent death waits this long


@pytest.fixture
async def core(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    async with session_factory(database_url, redis_url, tmp_path) as build:
        yield build


async def _device_kept(database_url: str, sid: str) -> bool:
    """The number is still linked: the session's row and the (simulated) network both keep its device."""
    row = await session_row(database_url, sid)
    linked = await fetchval(
        database_url, "SELECT count(*) FROM wa_sim.device WHERE jid = $1", row["device_jid"] or ""
    )
    return row["device_jid"] is not None and linked == 1


async def _paired(core: Factory, phone: str, owner: str) -> tuple[str, SessionCore, Exits]:
    session, exits = await core(owner=owner, lease_s=LEASE_S)
    await wait_core_status(session, SessionStatus.QR_READY)
    await session.simulate("scan", phone=phone, display_name=None)
    await wait_core_status(session, SessionStatus.CONNECTED)
    return session.session_id, session, exits


async def test_a_second_process_waits_while_the_first_holds_the_number(
    core: Factory, database_url: str
) -> None:
    sid, first, _ = await _paired(core, "+15551237001", owner="actor-a")
    second, second_exits = await core(sid, owner="actor-b", lease_s=LEASE_S)
    for _ in range(int(LEASE_S * 2 / 0.25)):  # two lease periods: renewed by the first, never taken
        assert (await first.view()).live
        assert not second.ready and second.current() is None  # never dialled
        await asyncio.sleep(0.25)
    await first.close(purge=False)  # a graceful stop releases the lease: the second takes over at once
    view = await wait_core_status(second, SessionStatus.CONNECTED, timeout=LEASE_S * 2)
    assert view.live and view.phone == "+15551237001"  # the stored device: no new scan
    assert await _device_kept(database_url, sid) and second_exits.reasons == []


async def test_a_process_whose_lease_is_taken_stops_without_logging_the_number_out(
    core: Factory, database_url: str
) -> None:
    sid, first, first_exits = await _paired(core, "+15551237002", owner="actor-a")
    # A newer process of the same actor (what Ray starts after a partition cut the first one off) takes
    # the lease at once; the first finds out at its next renewal and goes.
    second, second_exits = await core(sid, owner="actor-a", lease_s=LEASE_S)
    await wait_core_status(second, SessionStatus.CONNECTED, timeout=10)
    await asyncio.wait_for(first_exits.happened.wait(), LEASE_S * 2)
    assert first_exits.reasons[0].startswith("lease lost")
    assert not (await first.view()).live
    # Nothing the first process says any more reaches the store: the row is the second one's.
    await asyncio.sleep(LEASE_S)
    row = await session_row(database_url, sid)
    assert (row["status"], row["reason"]) == ("connected", None)
    assert (await second.view()).live and second_exits.reasons == []
    assert await _device_kept(database_url, sid)


async def test_replaced_after_a_takeover_ends_the_process_instead_of_dialling_again(
    core: Factory, database_url: str
) -> None:
    sid, first, first_exits = await _paired(core, "+15551237004", owner="actor-a")
    await eventually(lambda: session_row(database_url, sid), lambda r: r["status"] == "connected", 10)
    async with SessionStore(asyncpg_dsn(database_url), sid) as newer:
        assert await newer.take_lease("actor-a", LEASE_S) == 2  # a newer process took the number over
        # WhatsApp kicks the older connection as the newer one logs in; before the first's next renewal:
        await first._transitions.handle(Disconnected(Reason.REPLACED, retrying=False))
        await asyncio.wait_for(first_exits.happened.wait(), 5)
        assert len(first_exits.reasons) == 1 and first_exits.reasons[0].startswith("lease lost")
        row = await session_row(database_url, sid)
        # Not a failed dial (no backoff for the next process), not a state of its own, not logged out.
        assert (row["connect_failures"], row["status"], row["reason"]) == (0, "connected", None)
        assert await _device_kept(database_url, sid)


async def test_a_write_of_an_older_generation_never_lands(database_url: str) -> None:
    sid = await insert_session(database_url)
    dsn = asyncpg_dsn(database_url)
    async with SessionStore(dsn, sid) as old, SessionStore(dsn, sid) as new, SessionStore(dsn, sid) as other:
        assert await old.take_lease("actor-a", LEASE_S) == 1
        await old.save_state(SessionStatus.CONNECTED)
        assert await other.take_lease("actor-b", LEASE_S) is None  # another actor: not while it lives
        assert await new.take_lease("actor-a", LEASE_S) == 2  # a newer process of the same actor: at once
        with pytest.raises(LeaseLost):
            await old.save_state(SessionStatus.DISCONNECTED, Reason.REPLACED)
        with pytest.raises(LeaseLost):
            await old.renew_lease(LEASE_S)
        await old.release_lease()  # not its lease any more: changes nothing
        assert await other.take_lease("actor-b", LEASE_S) is None
        assert (await new.load()).view.status == SessionStatus.CONNECTED  # type: ignore[union-attr]
        await new.release_lease()  # a graceful stop: the other actor may take it now
        assert await other.take_lease("actor-b", LEASE_S) == 3
        with pytest.raises(LeaseLost):
            await new.save_state(SessionStatus.CONNECTING)


async def test_a_lease_that_runs_out_goes_to_the_next_actor(database_url: str) -> None:
    sid = await insert_session(database_url)
    dsn = asyncpg_dsn(database_url)
    async with SessionStore(dsn, sid) as silent, SessionStore(dsn, sid) as next_one:
        assert await silent.take_lease("actor-a", 0.5) == 1
        assert await next_one.take_lease("actor-b", LEASE_S) is None
        await asyncio.sleep(0.6)  # no renewal: the holder is gone, or cut off
        assert await next_one.take_lease("actor-b", LEASE_S) == 2


# ---------------------------------------------------------------------------------------------- on Ray


def _second_actor(config: Any, sid: str, namespace: str) -> Any:
    """A second detached actor for the same session, under another name (what a bug or a race could make)."""
    options = {**session_actor_options(config, sid), "name": f"second-{sid}"}
    actor_class = ray.remote(session_actor_class(config.session.backend))
    return actor_class.options(**options).remote(sid, config.session, config.stores)


async def _live(actor: Any) -> bool:
    try:
        view = await asyncio.wait_for(actor.status.remote(), 8)
    except (SessionUnavailable, TimeoutError, ray.exceptions.RayActorError):
        return False
    return bool(view.live)


async def _first_live(sid: str, namespace: str) -> bool:
    """Whether the session's own actor (whatever its process now) holds the connection."""
    try:
        return await _live(handle(sid, namespace))
    except ValueError:  # being replaced by the registry: no actor under the name for a moment
        return False


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie whose parent raylet is stopped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.mark.ray
@pytest.mark.timeout(300)
async def test_a_second_actor_for_a_live_session_never_holds_the_number_too(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace, session={"lease_s": LEASE_S})
    registry = start_registry(config)
    sid = await insert_session(database_url)
    await registry.ensure_session.remote(sid)
    await pair(sid, namespace, "+15551237010")
    first = handle(sid, namespace)
    second = _second_actor(config, sid, namespace)
    try:
        for _ in range(6):  # two lease periods and more
            assert await _live(first)
            placement = await second.ping.remote()
            assert not placement.ready  # waiting for the lease: no client, nothing dialled
            await asyncio.sleep(1.0)

        # The first process freezes past its lease: the second takes the number over, with its stored device.
        pid = (await first.ping.remote()).pid
        os.kill(pid, signal.SIGSTOP)
        try:
            await eventually(lambda: _live(second), bool, LEASE_S * 6)
        finally:
            os.kill(pid, signal.SIGCONT)
        # Back, the first finds its lease gone and ends without logging out (or the registry has replaced
        # the silent actor meanwhile); whatever process the first actor has now waits instead of dialling:
        # the number stays with the second, no ping-pong.
        await eventually(lambda: asyncio.to_thread(_running, pid), lambda running: not running, 30)
        for _ in range(int(LEASE_S * 3)):
            assert await _live(second)
            assert not await _first_live(sid, namespace)
            await asyncio.sleep(1.0)
        assert await _device_kept(database_url, sid)
        row = await session_row(database_url, sid)
        assert row["status"] == "connected"
    finally:
        ray.kill(second, no_restart=True)
    # With the second gone (no release: a silent death), the first's actor takes the number back.
    await wait_status(sid, namespace, SessionStatus.CONNECTED, timeout=30)
    assert await eventually(lambda: _first_live(sid, namespace), bool, LEASE_S * 6)
