"""Fencing across a network partition (`actors.lease`): a worker's raylet is stopped with SIGSTOP on a
`ray.cluster_utils` cluster, its processes running on; Ray restarts the session elsewhere, and the
process behind the cut must let go of the number by itself."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
import ray

from actors.registry import start_registry
from kernel.domain import SessionStatus
from tests.raykit import (
    eventually,
    handle,
    insert_session,
    kill_namespace_actors,
    new_cluster,
    pair,
    registry_config,
    unique_namespace,
)
from tests.sessionkit import session_row
from tests.test_fencing import LEASE_S, _device_kept, _running

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray, pytest.mark.timeout(300)]

CONNECTED = SessionStatus.CONNECTED

# Node death noticed in ~5 s instead of ~20 s (notes/ray.md), as in tests/test_cluster.py.
FAST_HEALTH = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 5,
}


async def _placement(sid: str, namespace: str) -> Any:
    try:
        return await asyncio.wait_for(handle(sid, namespace).ping.remote(), 5)
    except Exception:  # restarting, or unreachable behind the cut
        return None


async def test_a_partitioned_node_never_leaves_two_processes_on_one_number(
    database_url: str, redis_url: str
) -> None:
    cluster = new_cluster(head_sessions=0, **FAST_HEALTH)
    workers = [
        cluster.add_node(num_cpus=1, resources={"wa_session": 4}, object_store_memory=80 * 1024 * 1024)
        for _ in range(2)
    ]
    ray.init(address=cluster.address, logging_level="WARNING", configure_logging=False)
    cluster.wait_for_nodes()
    namespace = unique_namespace()
    try:
        start_registry(registry_config(database_url, redis_url, namespace, session={"lease_s": LEASE_S}))
        sid = await insert_session(database_url)
        await pair(sid, namespace, "+15551237020")
        before = await handle(sid, namespace).ping.remote()
        cut = next(w for w in workers if w.node_id == before.node_id)
        raylet = cut.all_processes["raylet"][0].process
        raylet.send_signal(signal.SIGSTOP)  # the node's processes run on; Ray loses sight of them
        try:
            after = await eventually(
                lambda: _placement(sid, namespace),
                lambda p: (
                    p is not None and p.node_id != before.node_id and p.status == SessionStatus.CONNECTED
                ),
                90,
            )
            # The process behind the cut finds its lease taken and leaves, without logging out.
            await eventually(lambda: asyncio.to_thread(_running, before.pid), lambda running: not running, 30)
        finally:
            raylet.send_signal(signal.SIGCONT)
        # Healed: the number stays with the one process, no ping-pong.
        for _ in range(int(LEASE_S * 3)):
            now = await _placement(sid, namespace)
            assert now is not None and now.pid == after.pid and now.status == SessionStatus.CONNECTED
            await asyncio.sleep(1.0)
        assert await _device_kept(database_url, sid)
        assert (await session_row(database_url, sid))["status"] == "connected"
    finally:
        kill_namespace_actors(namespace)
        ray.shutdown()
        cluster.shutdown()
