"""Placement and failover on a real multi-node Ray (`ray.cluster_utils.Cluster`: a head and two workers)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from actors.registry import REGISTRY_NAME, start_registry
from kernel.domain import SessionStatus
from tests.raykit import (
    PATIENT_QR,
    eventually,
    frames,
    insert_session,
    kill_namespace_actors,
    new_cluster,
    pair,
    registry_config,
    status_of,
    unique_namespace,
    wait_status,
)

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray]

# Node death noticed in ~5 s instead of ~20 s (notes/ray.md).
FAST_HEALTH = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 5,
}


def _start_cluster() -> tuple[Cluster, list[Any]]:
    cluster = new_cluster(head_sessions=0, **FAST_HEALTH)
    workers = [
        cluster.add_node(num_cpus=1, resources={"wa_session": 10}, object_store_memory=80 * 1024 * 1024)
        for _ in range(2)
    ]
    ray.init(address=cluster.address, logging_level="WARNING", configure_logging=False)
    cluster.wait_for_nodes()
    return cluster, workers


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, list[Any]]]:
    started = _start_cluster()
    yield started
    ray.shutdown()
    started[0].shutdown()


def _node_of(name: str, namespace: str) -> str | None:
    """The node of a live named actor, from the GCS's actor table (the state API needs a dashboard)."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    for raw in state.state._connect_and_get_accessor().get_actor_table(None, "ALIVE"):
        actor = gcs_pb2.ActorTableData.FromString(raw)
        if actor.name == name and actor.ray_namespace == namespace:
            return str(actor.address.node_id.hex())
    return None


async def _placements(namespace: str) -> dict[str, str]:
    registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
    return {p.session_id: p.node_id for p in await registry.placements.remote() if p.alive}


async def test_sessions_spread_and_survive_a_lost_worker(
    cluster: tuple[Cluster, list[Any]], database_url: str, redis_url: str
) -> None:
    head_cluster, workers = cluster
    namespace = unique_namespace()
    sids = [await insert_session(database_url, f"u{i}") for i in range(6)]
    start_registry(registry_config(database_url, redis_url, namespace, session=PATIENT_QR))
    for i, sid in enumerate(sids):
        await pair(sid, namespace, f"+1555124000{i}")
    where = await eventually(lambda: _placements(namespace), lambda p: len(p) == 6)
    per_node = Counter(where.values())
    worker_ids = {w.node_id for w in workers}
    assert set(per_node) == worker_ids, (
        "sessions run only on nodes that advertise wa_session, all of them used"
    )
    assert max(per_node.values()) <= 4
    assert _node_of(REGISTRY_NAME, namespace) == head_cluster.head_node.node_id, (
        "the supervisor runs on the head"
    )

    lost = workers[0]
    moved = [sid for sid, node in where.items() if node == lost.node_id]
    survivor = workers[1].node_id
    started = time.monotonic()
    head_cluster.remove_node(lost, allow_graceful=False)
    registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
    for sid in moved:
        # Connected again *on the surviving node* (the lost node's processes may linger for a moment).
        placement = await eventually(
            lambda sid=sid: registry.where.remote(sid),
            lambda p: p.alive and p.node_id == survivor and p.status == SessionStatus.CONNECTED,
            timeout=60,
        )
        assert placement.pid
        assert (await status_of(sid, namespace)).phone is not None
    elapsed = time.monotonic() - started
    after = await eventually(lambda: _placements(namespace), lambda p: len(p) == 6, timeout=30)
    assert set(after.values()) == {survivor}
    print(f"failover: {len(moved)} sessions connected again on the other worker after {elapsed:.1f}s")
    kill_namespace_actors(namespace)


async def test_full_cluster_restart_brings_every_paired_session_back(
    database_url: str, redis_url: str
) -> None:
    namespace = unique_namespace()
    cluster, _ = _start_cluster()
    try:
        sids = [await insert_session(database_url, f"u{i}") for i in range(4)]
        start_registry(registry_config(database_url, redis_url, namespace, session=PATIENT_QR))
        for i, sid in enumerate(sids):
            await pair(sid, namespace, f"+1555125000{i}")
        phones = {sid: (await status_of(sid, namespace)).phone for sid in sids}
    finally:
        ray.shutdown()
        cluster.shutdown()

    cluster, _ = _start_cluster()  # a new cluster: no actor survives, only PostgreSQL
    try:
        reload_per_s = 2.0
        async with AsyncExitStack() as stack:
            # Only these sessions' channels: Redis pub/sub is server-wide, other runs may publish too.
            got = [await stack.enter_async_context(frames(redis_url, sid)) for sid in sids]
            registry = start_registry(
                registry_config(database_url, redis_url, namespace, reload_per_s=reload_per_s)
            )
            for sid in sids:
                view = await wait_status(sid, namespace, SessionStatus.CONNECTED, timeout=60)
                assert view.phone == phones[sid]
            await asyncio.sleep(0.2)
        for one in got:
            assert one.of("qr") == [], "no session asked for a scan"
            for kind, body in one.items:
                assert body.get("status") != "qr_ready", (kind, body)
        created = [at for sid, at in await registry.creations.remote() if sid in sids]
        assert len(created) == 4
        # Staggered: the registry spaces creations 1/rate apart (1.5 s for these four; unpaced, they
        # would be milliseconds apart). Load delays any creation, the first one too, which shortens
        # the span seen from it: half the paced span is the bound no load can break.
        span = created[-1] - created[0]
        assert span >= 0.5 * (len(created) - 1) / reload_per_s, created
    finally:
        kill_namespace_actors(namespace)
        ray.shutdown()
        cluster.shutdown()
