"""Sessions drive the cluster's size: Ray's autoscaler on its fake multi-node provider (worker nodes are
real raylets started as local processes: tests/autoscalekit.py), a head without session capacity,
workers of 4 `wa_session`, at most 3.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from actors import fleet
from actors.calls import NetworkControls
from actors.registry import start_registry
from kernel.domain import SessionStatus
from tests.autoscalekit import autoscaling_cluster
from tests.raykit import (
    control,
    eventually,
    handle,
    insert_session,
    kill_namespace_actors,
    registry_config,
    status_of,
    unique_namespace,
    wait_status,
)

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray]

PER_WORKER = 4
MAX_WORKERS = 3
SESSIONS = 10
# Plenty for 2 busy cores: measured here, 3 nodes up and 10 bare actors placed in 16 s, idle nodes
# gone 15 s after their actors (notes/ray.md).
SCALE_UP_TIMEOUT_S = 240.0
SCALE_DOWN_TIMEOUT_S = 180.0
IDLE_TIMEOUT_S = 6.0  # tests/autoscalekit.py: idle_timeout_minutes 0.1


@pytest.fixture
def autoscaling_head() -> Iterator[str]:
    """A head that holds no session and an autoscaler that adds up to 3 workers; yields its address."""
    with autoscaling_cluster(PER_WORKER, MAX_WORKERS) as address:
        yield address


async def _pair(sid: str, namespace: str, phone: str) -> None:
    """Scan its QR once Ray has placed it (that waits for a node), then wait for `connected`."""
    await wait_status(sid, namespace, SessionStatus.QR_READY, timeout=SCALE_UP_TIMEOUT_S)
    await control(handle(sid, namespace), NetworkControls.scan)(phone=phone, display_name="Tester")
    await wait_status(sid, namespace, SessionStatus.CONNECTED, timeout=60)


def _worker_nodes() -> list[fleet.Node]:
    return [n for n in fleet.nodes() if n.alive and not n.is_head]


async def test_sessions_add_worker_nodes_and_idle_ones_go_away(
    autoscaling_head: str, database_url: str, redis_url: str
) -> None:
    namespace = unique_namespace()
    try:
        assert _worker_nodes() == [], "no worker before any session"
        sids = [await insert_session(database_url, f"as{i}") for i in range(SESSIONS)]
        started = time.monotonic()
        registry = start_registry(
            registry_config(database_url, redis_url, namespace, session={"qr_first_s": 300.0})
        )
        # Nothing can run on the head: every session waits for capacity, and the registry says so.
        pending = await eventually(registry.pending.remote, lambda p: p.count >= PER_WORKER, timeout=60)
        first_pending = time.monotonic()
        await asyncio.gather(*(_pair(sid, namespace, f"+155513{i:05d}") for i, sid in enumerate(sids)))
        connected = time.monotonic()
        views = [await status_of(sid, namespace) for sid in sids]
        assert all(v.status == SessionStatus.CONNECTED for v in views)
        workers = _worker_nodes()
        assert len(workers) == MAX_WORKERS, workers
        where = Counter(e.node_id for e in fleet.session_actors(namespace))
        assert set(where) <= {w.node_id for w in workers}, "no session on the head"
        assert max(where.values()) <= PER_WORKER
        assert (await registry.pending.remote()).count == 0
        assert [sid for sid, _ in await registry.creations.remote()].count(sids[0]) == 1, (
            "a session waiting for a node was not killed and created again"
        )
        print(
            f"autoscale up: {pending.count} pending after {first_pending - started:.1f}s, "
            f"{SESSIONS} connected on {len(workers)} new nodes after {connected - started:.1f}s"
        )
        # A node holding sessions is never idle: past the idle timeout, every worker and session stays.
        await asyncio.sleep(IDLE_TIMEOUT_S + 5)
        assert {w.node_id for w in _worker_nodes()} == {w.node_id for w in workers}
        still = [(await status_of(sid, namespace)).status for sid in sids]
        assert still == [SessionStatus.CONNECTED] * SESSIONS

        for sid in sids:
            await registry.destroy_session.remote(sid)
        emptied = time.monotonic()
        await eventually(
            lambda: asyncio.to_thread(_worker_nodes), lambda nodes: nodes == [], timeout=SCALE_DOWN_TIMEOUT_S
        )
        print(f"autoscale down: idle workers gone {time.monotonic() - emptied:.1f}s after the last session")
    finally:
        kill_namespace_actors(namespace)
