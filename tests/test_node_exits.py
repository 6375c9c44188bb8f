"""A node Ray takes away (`ray drain-node`, a scale-down, a pod's preStop `whatsapp-bridge leave`): its
sessions move before its deadline, through the registry's forced drain, on a real multi-node Ray
(`ray.cluster_utils.Cluster`: a head and two workers). Messages keep arriving while they move
(`tests.test_drain.Network` plays WhatsApp's offline queue)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import ray
from ray._raylet import GcsClient  # type: ignore[attr-defined]
from ray.cluster_utils import Cluster
from ray.core.generated import autoscaler_pb2

from actors import fleet
from actors.registry import start_registry
from api import leave
from kernel.domain import SessionStatus
from tests.clikit import clean_env, command
from tests.raykit import (
    Frames,
    eventually,
    fetchval,
    frames,
    handle,
    insert_session,
    kill_namespace_actors,
    new_cluster,
    pair,
    registry_config,
    status_of,
    unique_namespace,
)
from tests.test_drain import Network, _rows_by_text

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray]

SESSIONS = 4
DEADLINE_S = 60
NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A head without session capacity and one worker of SESSIONS; the test adds the second."""
    head = new_cluster(head_sessions=0)
    head.add_node(resources={"wa_session": SESSIONS}, **NODE_ARGS)
    ray.init(address=head.address, logging_level="WARNING", configure_logging=False)
    head.wait_for_nodes()
    yield head
    ray.shutdown()
    head.shutdown()


def ray_drain(node_id: str, deadline_s: float) -> None:
    """What `ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION --deadline-remaining-seconds` does."""
    gcs = ray._private.worker.global_worker.gcs_client  # type: ignore[attr-defined]
    accepted, why = gcs.drain_node(
        node_id,
        autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
        "test: the node is going",
        int((time.time() + deadline_s) * 1000),
    )
    assert accepted, why


async def _paired_on_one_worker(
    cluster: Cluster, database_url: str, redis_url: str, namespace: str, prefix: str
) -> tuple[list[str], str, str]:
    """SESSIONS paired sessions, all on the first worker; a second worker added: (sids, first, second)."""
    start_registry(registry_config(database_url, redis_url, namespace, session={"qr_first_s": 300.0}))
    sids = [await insert_session(database_url, f"{prefix}{i}") for i in range(SESSIONS)]
    for i, sid in enumerate(sids):
        await pair(sid, namespace, f"+1555{prefix}{i:02d}")
    first = {e.node_id for e in fleet.session_actors(namespace)}
    assert len(first) == 1, "every session is on the first worker"
    other = cluster.add_node(resources={"wa_session": SESSIONS}, **NODE_ARGS).node_id
    cluster.wait_for_nodes()
    return sids, first.pop() or "", other


async def _connected_on(namespace: str, sids: list[str], node_id: str) -> int:
    count = 0
    for sid in sids:
        where = await handle(sid, namespace).ping.remote()
        view = await status_of(sid, namespace)
        count += where.node_id == node_id and where.ready and view.status == SessionStatus.CONNECTED
    return count


async def test_a_node_ray_drains_hands_its_sessions_to_another_before_its_deadline(
    cluster: Cluster, database_url: str, redis_url: str
) -> None:
    namespace = unique_namespace()
    try:
        sids, going, other = await _paired_on_one_worker(cluster, database_url, redis_url, namespace, "134")
        phones = {sid: (await status_of(sid, namespace)).phone for sid in sids}

        async with AsyncExitStack() as stack:
            got: list[Frames] = [await stack.enter_async_context(frames(redis_url, sid)) for sid in sids]
            network = Network(namespace, sids)
            sender = asyncio.create_task(network.run())
            await eventually(lambda: asyncio.sleep(0, len(network.taken)), lambda n: n >= 8, timeout=30)
            started = time.monotonic()
            ray_drain(going, DEADLINE_S)
            await eventually(
                lambda: _connected_on(namespace, sids, other),
                lambda n: n == SESSIONS,
                timeout=DEADLINE_S,
                every=0.5,
            )
            took = time.monotonic() - started
            print(f"{SESSIONS} sessions moved off a draining node in {took:.1f}s")
            taken_during = len(network.taken)
            await eventually(lambda: asyncio.sleep(0, len(network.taken)), lambda n: n >= taken_during + 8)
            network.stop()
            await asyncio.wait_for(sender, 60)

        assert took < DEADLINE_S
        for sid in sids:
            assert (await status_of(sid, namespace)).phone == phones[sid], "device kept, no logout"
        for one in got:
            assert one.of("qr") == [], "no session asked for a scan"
            assert all(body.get("reason") != "logged_out" for body in one.of("status"))
        drains = await fetchval(
            database_url, "SELECT count(*) FROM fleet_operation WHERE kind = 'drain' AND node_id = $1", going
        )
        assert drains == 1, "one drain for the node, however often the registry saw it draining"
        assert await fetchval(database_url, "SELECT forced FROM fleet_operation WHERE node_id = $1", going), (
            "forced: the node goes whatever room the others have"
        )
        # Emptied, the node's raylet leaves by itself, as Ray does for a drained idle node (once its spool
        # keeper has seen nothing to keep for IDLE_CHECKS checks).
        await eventually(
            lambda: asyncio.to_thread(fleet.nodes),
            lambda nodes: not next(n for n in nodes if n.node_id == going).alive,
            timeout=60,
        )

        assert network.refused > 0, "messages arrived while sessions were moving"
        rows = await eventually(
            lambda: _rows_by_text(database_url, sids),
            lambda c: sum(c.values()) >= len(network.taken),
            timeout=30,
        )
        assert set(rows) == set(network.taken), "every message a session took is stored"
        assert max(rows.values()) == 1, "no message stored twice"
        assert await fetchval(database_url, "SELECT count(*) FROM wa_sim.device") == SESSIONS
    finally:
        kill_namespace_actors(namespace)


async def test_leave_returns_once_its_node_holds_no_session_and_they_run_elsewhere(
    cluster: Cluster, database_url: str, redis_url: str
) -> None:
    """`whatsapp-bridge leave`, a worker pod's preStop: the pod is deleted only after its sessions moved."""
    namespace = unique_namespace()
    try:
        sids, going, other = await _paired_on_one_worker(cluster, database_url, redis_url, namespace, "135")
        async with AsyncExitStack() as stack:
            got = [await stack.enter_async_context(frames(redis_url, sid)) for sid in sids]
            env = clean_env(**{k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH_")})
            started = time.monotonic()
            done = await asyncio.to_thread(
                subprocess.run,
                [*command(), "leave", "--address", cluster.address, "--node-id", going, "--deadline", "60"],
                env=env,
                capture_output=True,
                text=True,
                timeout=90,
            )
            took = time.monotonic() - started
            assert done.returncode == 0, done.stderr
            assert fleet.sessions_on(namespace, going) == [], "it waited until the node held no session"
            print(f"leave: {SESSIONS} sessions moved in {took:.1f}s")
            assert "0 sessions left on node" in done.stderr
            await eventually(
                lambda: _connected_on(namespace, sids, other), lambda n: n == SESSIONS, timeout=30
            )
        for one in got:
            assert one.of("qr") == [], "no session asked for a scan"
            assert all(body.get("reason") != "logged_out" for body in one.of("status"))
    finally:
        kill_namespace_actors(namespace)


async def test_leave_does_not_hold_a_pod_whose_sessions_have_nowhere_to_go(
    cluster: Cluster, database_url: str, redis_url: str
) -> None:
    """Every worker going at once (a Recreate upgrade): the hook returns at once instead of holding the
    pod until its deadline; Ray restarts the sessions when capacity appears."""
    namespace = unique_namespace()
    try:
        start_registry(registry_config(database_url, redis_url, namespace, session={"qr_first_s": 300.0}))
        sid = await insert_session(database_url, "nowhere")
        await pair(sid, namespace, "+15551370001")
        (only,) = {e.node_id for e in fleet.session_actors(namespace)}
        gcs = GcsClient(address=cluster.address)
        started = time.monotonic()
        left = await asyncio.to_thread(leave.leave, gcs, only or "", 120)
        assert left == 1 and time.monotonic() - started < 30, "it did not wait for the deadline"
    finally:
        kill_namespace_actors(namespace)
