"""Nothing stranded: a session moved to another node while PostgreSQL is away brings what it spooled on
its old node along (actors.spool_handover), on a real two-worker Ray (`ray.cluster_utils.Cluster`).

Each worker stands for a machine: its own temporary folder (TMPDIR), so its own spool folder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import ray
from ray.cluster_utils import Cluster

from actors.calls import NetworkControls
from actors.registry_config import create_session_actor
from actors.spool import pending_bytes
from kernel.domain import Placement, SessionStatus
from kernel.settings import asyncpg_dsn
from tests.faultproxy import FaultProxy
from tests.raykit import (
    control,
    eventually,
    handle,
    insert_session,
    kill_namespace_actors,
    new_cluster,
    pair,
    registry_config,
    unique_namespace,
    wait_status,
)

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray, pytest.mark.timeout(300)]

MESSAGES = 12
FAST_HEALTH = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 5,
}


@dataclass
class Worker:
    node: Any  # ray's node handle, for remove_node
    node_id: str
    spool: Path  # its spool folder, on its own "disk"


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Cluster, list[Worker]]]:
    """A head without sessions and two workers, each with a disk of its own."""
    head = new_cluster(head_sessions=0, **FAST_HEALTH)
    nodes = []
    for name in ("a", "b"):
        disk = tmp_path / name
        disk.mkdir()
        node = head.add_node(
            num_cpus=1,
            resources={"wa_session": 2},
            object_store_memory=80 * 1024 * 1024,
            env_vars={"TMPDIR": str(disk)},
        )
        nodes.append(Worker(node, node.node_id, disk / "whatsapp-bridge-spool"))
    ray.init(address=head.address, logging_level="WARNING", configure_logging=False)
    head.wait_for_nodes()
    yield head, nodes
    ray.shutdown()
    head.shutdown()


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[FaultProxy]:
    parts = urlsplit(database_url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


async def _texts(database_url: str, sid: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT text FROM message WHERE session_id = $1::uuid AND text LIKE 'spooled on A %'"
            " ORDER BY ts, id",
            sid,
        )
    finally:
        await conn.close()
    return [r["text"] for r in rows]


async def _placement(sid: str, namespace: str) -> Placement:
    placement: Placement = await handle(sid, namespace).ping.remote()
    return placement


async def test_a_session_moved_while_postgres_is_away_stores_what_it_spooled_on_its_old_node(
    workers: tuple[Cluster, list[Worker]], database_url: str, redis_url: str, pg_proxy: FaultProxy
) -> None:
    _, (a, b) = workers
    spool_a, node_b, spool_b = a.spool, b.node_id, b.spool
    namespace = unique_namespace()
    config = _config(database_url, redis_url, namespace, pg_proxy)
    try:
        sid = await insert_session(database_url)
        texts = await _spooled_on(config, sid, a, pg_proxy)

        # Forced to B: A's process is gone for good, a new actor of the session starts on B.
        ray.kill(handle(sid, namespace), no_restart=True)
        await eventually(lambda: _gone(sid, namespace), bool, 30)
        create_session_actor(config, sid, node_b)
        await eventually(lambda: _placement(sid, namespace), lambda p: p.node_id == node_b, 60)
        pg_proxy.restore()

        await wait_status(sid, namespace, SessionStatus.CONNECTED, timeout=60)
        stored = await eventually(lambda: _texts(database_url, sid), lambda got: len(got) >= MESSAGES, 30)
        assert stored == texts  # every message once, in the order WhatsApp delivered them
        assert not any(spool_a.glob(f"{sid}.*"))  # nothing left on A to apply twice
        # B's spool empties once what it applied is committed (the rows are visible a moment before).
        await eventually(_async(lambda: pending_bytes(spool_b / f"{sid}.spool")), lambda n: n == 0, 15)
    finally:
        pg_proxy.restore()
        kill_namespace_actors(namespace)


def _async(read: Callable[[], int]) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return read()

    return probe


def _config(database_url: str, redis_url: str, namespace: str, pg_proxy: FaultProxy) -> Any:
    """Sessions whose bridge tables go through `pg_proxy` (the simulated network's stay reachable)."""
    proxied = asyncpg_dsn(pg_proxy.url_for(database_url))
    return registry_config(
        database_url, redis_url, namespace, session={"database_dsn": proxied, "lease_s": 3.0}
    )


async def _spooled_on(config: Any, sid: str, worker: Worker, pg_proxy: FaultProxy) -> list[str]:
    """The session paired on `worker`, then PostgreSQL cut and MESSAGES delivered: spooled there only."""
    namespace = config.namespace
    create_session_actor(config, sid, worker.node_id)
    await pair(sid, namespace, "+15551239001")
    assert (await _placement(sid, namespace)).node_id == worker.node_id
    pg_proxy.cut()
    texts = [f"spooled on A {i:02d}" for i in range(MESSAGES)]
    incoming = control(handle(sid, namespace), NetworkControls.incoming)
    for text in texts:
        await incoming(from_="+15557009001", text=text, push_name="Ann")
    await eventually(lambda: _placement(sid, namespace), lambda p: p.spooled >= MESSAGES, 15)
    assert pending_bytes(worker.spool / f"{sid}.spool") > 0  # acknowledged, only on this node's disk
    return texts


async def test_a_node_lost_with_a_spool_loses_its_writes_and_never_holds_the_session_back(
    workers: tuple[Cluster, list[Worker]], database_url: str, redis_url: str, pg_proxy: FaultProxy
) -> None:
    cluster, (a, b) = workers
    namespace = unique_namespace()
    config = _config(database_url, redis_url, namespace, pg_proxy)
    try:
        sid = await insert_session(database_url)
        await _spooled_on(config, sid, a, pg_proxy)
        cluster.remove_node(a.node, allow_graceful=False)  # the machine is gone, its disk with it
        await eventually(lambda: _placement(sid, namespace), lambda p: p.node_id == b.node_id, 90)
        pg_proxy.restore()
        # No keeper on a lost node is waited for: the session is back within its usual boot.
        await wait_status(sid, namespace, SessionStatus.CONNECTED, timeout=30)
        assert await _texts(database_url, sid) == []  # what only A's disk held is lost with it
    finally:
        pg_proxy.restore()
        kill_namespace_actors(namespace)


async def _gone(sid: str, namespace: str) -> bool:
    try:
        handle(sid, namespace)
    except ValueError:
        return True
    return False
