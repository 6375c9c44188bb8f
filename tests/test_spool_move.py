"""Nothing stranded: a session moved to another node while PostgreSQL is away brings what it spooled on
its old node along (actors.spool_handover), on a real two-worker Ray (`ray.cluster_utils.Cluster`).

Each worker stands for a machine: its own temporary folder (TMPDIR), so its own spool folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import ray

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


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[list[tuple[str, Path]]]:
    """A head without sessions and two workers, each with a disk of its own: (node id, spool folder)."""
    head = new_cluster(head_sessions=0)
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
        nodes.append((node.node_id, disk / "whatsapp-bridge-spool"))
    ray.init(address=head.address, logging_level="WARNING", configure_logging=False)
    head.wait_for_nodes()
    yield nodes
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
    two_nodes: list[tuple[str, Path]], database_url: str, redis_url: str, pg_proxy: FaultProxy
) -> None:
    (node_a, spool_a), (node_b, spool_b) = two_nodes
    namespace = unique_namespace()
    proxied = asyncpg_dsn(pg_proxy.url_for(database_url))
    config = registry_config(
        database_url, redis_url, namespace, session={"database_dsn": proxied, "lease_s": 3.0}
    )
    try:
        sid = await insert_session(database_url)
        create_session_actor(config, sid, node_a)
        await pair(sid, namespace, "+15551239001")
        assert (await _placement(sid, namespace)).node_id == node_a

        pg_proxy.cut()
        texts = [f"spooled on A {i:02d}" for i in range(MESSAGES)]
        incoming = control(handle(sid, namespace), NetworkControls.incoming)
        for text in texts:
            await incoming(from_="+15557009001", text=text, push_name="Ann")
        await eventually(lambda: _placement(sid, namespace), lambda p: p.spooled >= MESSAGES, 15)
        assert pending_bytes(spool_a / f"{sid}.spool") > 0  # acknowledged, only on A's disk

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
        assert pending_bytes(spool_b / f"{sid}.spool") == 0
    finally:
        pg_proxy.restore()
        kill_namespace_actors(namespace)


async def _gone(sid: str, namespace: str) -> bool:
    try:
        handle(sid, namespace)
    except ValueError:
        return True
    return False
