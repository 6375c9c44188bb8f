"""The registry under faults, on a real local Ray and real PostgreSQL: orphans, a database that is away,
sessions that report they cannot make progress."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
import ray

from actors.registry import start_registry
from kernel.domain import Placement, SessionStatus
from kernel.ids import actor_name
from kernel.settings import asyncpg_dsn
from tests.faultproxy import FaultProxy
from tests.raykit import (
    eventually,
    fetchval,
    handle,
    insert_session,
    pair,
    pid_of,
    registry_config,
    registry_passes,
    wait_status,
)

pytestmark = pytest.mark.ray


async def _devices(database_url: str, session_id: str) -> int:
    """Devices the simulated network still links to the session (a logout deletes them)."""
    count: int = await fetchval(
        database_url, "SELECT count(*) FROM wa_sim.device WHERE session_id = $1::uuid", session_id
    )
    return count


def _named(session_id: str, namespace: str) -> bool:
    try:
        ray.get_actor(actor_name(session_id), namespace=namespace)
    except ValueError:
        return False
    return True


async def test_an_orphan_is_stopped_after_its_grace_and_never_logged_out(
    database_url: str, redis_url: str, namespace: str
) -> None:
    grace = 4.0
    config = registry_config(database_url, redis_url, namespace, orphan_grace_s=grace)
    sid = await insert_session(database_url)
    start_registry(config)
    await pair(sid, namespace, "+15551230301")
    assert await _devices(database_url, sid) == 1

    # The registry now reads a database without this row (a restored backup, a wrong DATABASE_URL).
    await fetchval(database_url, "DELETE FROM whatsapp_session WHERE id = $1::uuid", sid)
    gone_at = time.monotonic()
    await eventually(lambda: asyncio.sleep(0, _named(sid, namespace)), lambda named: not named, timeout=60)
    assert time.monotonic() - gone_at >= grace, "stopped before its grace was over"
    assert await _devices(database_url, sid) == 1, "the orphan was logged out: the phone lost its device"


async def test_no_orphan_is_stopped_while_the_database_is_unreachable(
    database_url: str, redis_url: str, namespace: str
) -> None:
    up = urlsplit(database_url)
    with FaultProxy(up.hostname or "127.0.0.1", up.port or 5432) as proxy:
        # Only the registry goes through the proxy: the sessions keep their database. One QR round
        # outlasts the cut: a recycle at the round's end (2.3 s with raykit.FAST) made the ping below
        # meet a restarting actor, depending on the machine's speed.
        direct = registry_config(
            database_url,
            redis_url,
            namespace,
            orphan_grace_s=1.0,
            reconcile_interval_s=0.3,
            session={"qr_first_s": 30.0},
        )
        config = replace(direct, database_dsn=asyncpg_dsn(proxy.url_for(database_url)))
        kept = await insert_session(database_url)
        registry = start_registry(config)
        await wait_status(kept, namespace, SessionStatus.QR_READY)
        proxy.cut()
        await asyncio.sleep(0.5)
        await fetchval(database_url, "DELETE FROM whatsapp_session WHERE id = $1::uuid", kept)  # unseen
        for _ in range(10):  # ~3 s of passes, three times the grace: none can read the rows
            await asyncio.sleep(0.3)
            assert _named(kept, namespace)
        assert await pid_of(kept, namespace)
        proxy.restore()
        # The database answers again: now the orphan is seen, and stopped after a full grace.
        await registry_passes(registry, 1)
        await eventually(lambda: asyncio.sleep(0, _named(kept, namespace)), lambda n: not n, timeout=30)


class _StuckOnce:
    """Stands in for a session whose first process reports `stuck` (its client calls keep timing out)."""

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id
        self._restarted = ray.get_runtime_context().was_current_actor_reconstructed

    async def ping(self) -> Placement:
        return Placement(
            self._session_id,
            ray.get_runtime_context().get_node_id(),
            os.getpid(),
            SessionStatus.CONNECTED,
            alive=True,
            stuck=None if self._restarted else "3 WhatsApp client calls in a row timed out",
        )

    async def close(self, purge: bool) -> None:
        raise AssertionError("a stuck session is restarted, never closed")


async def test_a_stuck_session_gets_a_fresh_process_under_the_same_actor(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace, unresponsive_passes=2)
    sid = await insert_session(database_url)
    actor = (
        ray.remote(_StuckOnce)
        .options(
            name=actor_name(sid),
            namespace=namespace,
            lifetime="detached",
            max_restarts=-1,
            num_cpus=0,
        )
        .remote(sid)
    )
    first = await actor.ping.remote()
    assert first.stuck
    registry = start_registry(config)

    fresh = await eventually(actor.ping.remote, lambda p: p.pid != first.pid, timeout=30)
    assert fresh.stuck is None
    assert handle(sid, namespace)._actor_id == actor._actor_id, "same actor: names and handles stay valid"
    await registry_passes(registry, 3)
    assert (await actor.ping.remote()).pid == fresh.pid, "restarted once, then left alone"
    assert [s for s, _ in await registry.creations.remote() if s == sid] == [], "never recreated"


async def test_a_session_that_boots_without_its_database_is_left_alone_and_recovers(
    database_url: str, redis_url: str, namespace: str
) -> None:
    up = urlsplit(database_url)
    with FaultProxy(up.hostname or "127.0.0.1", up.port or 5432) as proxy:
        proxy.cut()
        config = registry_config(
            database_url,
            redis_url,
            namespace,
            unresponsive_passes=2,
            reconcile_interval_s=0.5,
            session={"database_dsn": asyncpg_dsn(proxy.url_for(database_url))},
        )
        sid = await insert_session(database_url)
        registry = start_registry(config)
        booting = await eventually(
            lambda: handle(sid, namespace).ping.remote(), lambda p: p.alive, timeout=30
        )
        assert not booting.ready
        await registry_passes(registry, 6)  # three times the passes after which a stuck session is restarted
        again = await handle(sid, namespace).ping.remote()
        assert (again.pid, again.ready) == (booting.pid, False)
        proxy.restore()
        await wait_status(sid, namespace, SessionStatus.QR_READY, timeout=60)
        assert await pid_of(sid, namespace) == booting.pid, "it recovered in its own process"
        assert len(await registry.creations.remote()) == 1
