"""Drains an operator can trust: a persisted operation the registry carries out whatever process dies,
refused when the other nodes cannot hold the sessions, cancellable, and visible in /health when
sessions wait too long. Real Ray (`ray.cluster_utils.Cluster` and a local one), real API processes."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from actors import fleet
from actors.registry import REGISTRY_NAME, start_registry
from kernel.domain import SessionStatus
from tests.apikit import Stack, api_stack
from tests.apiproc import Api, spawn_cluster_api
from tests.raykit import (
    eventually,
    frames,
    handle,
    insert_session,
    kill_namespace_actors,
    new_cluster,
    pair,
    ray_init_local,
    registry_config,
    status_of,
    unique_namespace,
)

pytestmark = [pytest.mark.ray, pytest.mark.own_ray]

SESSIONS = 10
NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def _registry_pid(namespace: str) -> int:
    """The registry's process, from the GCS's actor table."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    for raw in accessor.get_actor_table(None, "ALIVE"):
        actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]
        if actor.name == REGISTRY_NAME and actor.ray_namespace == namespace:
            return int(actor.pid)
    raise AssertionError("no live registry")


def _spawn_api(tmp_path: Path, cluster: Cluster, database_url: str, redis_url: str, namespace: str) -> Api:
    tmp_path.mkdir(parents=True)
    api = spawn_cluster_api(
        tmp_path, cluster.address, database_url, redis_url, namespace, user="ops-user", request_bound_s=15.0
    )
    api.until("the API answers", lambda: api.get("/health").status_code == 200, timeout=90)
    return api


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A head without session capacity and one worker of SESSIONS; the test adds the second."""
    cluster = new_cluster(head_sessions=0)
    cluster.add_node(resources={"wa_session": SESSIONS}, **NODE_ARGS)
    ray.init(address=cluster.address, logging_level="WARNING", configure_logging=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.cluster
async def test_a_drain_ends_with_every_session_connected_elsewhere_though_the_api_and_registry_die(
    cluster: Cluster, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    namespace = unique_namespace()
    apis: list[Api] = []
    try:
        # QR rounds outlast the test: no unpaired session is recycled meanwhile.
        start_registry(registry_config(database_url, redis_url, namespace, session={"qr_first_s": 300.0}))
        sids = [await insert_session(database_url, f"op{i}") for i in range(SESSIONS)]
        for i, sid in enumerate(sids):
            await pair(sid, namespace, f"+155513100{i:02d}")
        first = {e.node_id for e in fleet.session_actors(namespace)}
        assert len(first) == 1, "every session is on the first worker"
        drained = first.pop() or ""
        second = cluster.add_node(resources={"wa_session": SESSIONS + 2}, **NODE_ARGS).node_id
        cluster.wait_for_nodes()
        apis.append(_spawn_api(tmp_path / "api1", cluster, database_url, redis_url, namespace))

        async with AsyncExitStack() as stack:
            got = [await stack.enter_async_context(frames(redis_url, sid)) for sid in sids]
            started = apis[0].request("POST", f"/ops/nodes/{drained[:12]}/drain")
            assert started.status_code == 202, started.text
            op = started.json()
            assert op["state"] == "running" and op["planned"] == SESSIONS and op["nodeId"] == drained

            # Mid-drain: the API that asked for it dies, then the registry carrying it out.
            apis[0].until(
                "two sessions moved",
                lambda: len(apis[0].get(f"/ops/operations/{op['id']}").json()["moved"]) >= 2,
            )
            apis[0].proc.send_signal(signal.SIGKILL)
            apis[0].proc.wait(10)
            os.kill(_registry_pid(namespace), signal.SIGKILL)

            apis.append(_spawn_api(tmp_path / "api2", cluster, database_url, redis_url, namespace))
            path = f"/ops/operations/{op['id']}"
            apis[1].until(
                "the drain is done", lambda: apis[1].get(path).json()["state"] == "done", timeout=300
            )
            done = apis[1].get(path).json()
            assert done["left"] == 0 and not done["waiting"], done
            by_node = apis[1].get(f"/ops/nodes/{drained[:12]}/drain").json()
            assert by_node["id"] == op["id"] and by_node["state"] == "done"

            for sid in sids:
                where = await handle(sid, namespace).ping.remote()
                assert where.node_id == second, f"{sid} runs on a live node that is not drained"
                assert where.ready and where.stuck is None, f"{sid} is not left closed but alive: {where}"
                assert (await status_of(sid, namespace)).status == SessionStatus.CONNECTED
            assert fleet.sessions_on(namespace, drained) == []
            for one in got:
                assert one.of("qr") == [], "no session asked for a scan"

            # Cancelled, the node takes sessions again: a rebalance brings some of them back.
            cancelled = apis[1].request("DELETE", f"/ops/nodes/{drained[:12]}/drain")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
            assert apis[1].request("DELETE", f"/ops/nodes/{drained[:12]}/drain").status_code == 404
            rebalance = apis[1].request("POST", "/ops/rebalance")
            assert rebalance.status_code == 202, rebalance.text
            rid = rebalance.json()["id"]
            assert apis[1].request("POST", "/ops/rebalance").json()["id"] == rid, "one rebalance at a time"
            apis[1].until(
                "the rebalance is done",
                lambda: apis[1].get("/ops/rebalance").json()["state"] == "done",
                timeout=180,
            )
            placed = Counter(e.node_id for e in fleet.session_actors(namespace))
            # Shares by capacity (10 and 12 units): 4.5 and 5.5 sessions; each node within one of its own.
            assert placed == {drained: 4, second: 6}, placed
            for sid in sids:
                assert (await status_of(sid, namespace)).status == SessionStatus.CONNECTED
    finally:
        for api in apis:
            if api.alive():
                api.proc.send_signal(signal.SIGKILL)
                api.proc.wait(10)
        kill_namespace_actors(namespace)


CAPACITY = 2


@pytest.fixture
def single_node(database_url: str, redis_url: str) -> Iterator[Stack]:
    ray_init_local(wa_sessions=CAPACITY)
    try:
        with api_stack(
            database_url, redis_url, session={"qr_first_s": 300.0}, registry={"stall_s": 3.0}
        ) as running:
            yield running
    finally:
        ray.shutdown()


async def test_draining_the_only_node_is_refused_unless_forced_and_a_cancel_brings_the_sessions_back(
    single_node: Stack, database_url: str
) -> None:
    stack, namespace = single_node, single_node.namespace
    registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
    sids = [await insert_session(database_url, f"only{i}") for i in range(CAPACITY)]
    for sid in sids:
        await registry.ensure_session.remote(sid)
    for i, sid in enumerate(sids):
        await pair(sid, namespace, f"+155513200{i:02d}")
    node = ray.get_runtime_context().get_node_id()
    async with stack.client() as client:
        refused = await client.post(f"/ops/nodes/{node}/drain")
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "no_capacity" and f"{CAPACITY} session(s)" in error["message"], error
        assert (await client.get(f"/ops/nodes/{node}/drain")).json()["state"] == "none"
        for sid in sids:
            assert (await status_of(sid, namespace)).status == SessionStatus.CONNECTED, "nothing moved"

        forced = await client.post(f"/ops/nodes/{node}/drain", params={"force": "true"})
        assert forced.status_code == 202 and forced.json()["state"] == "running", forced.text
        # The sessions have nowhere to go: /health says so once they have waited longer than the bound.
        health = await eventually(
            lambda: client.get("/health"), lambda r: r.json()["pending"]["stalled"] == CAPACITY, timeout=90
        )
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.json()
        views = (await client.get("/ops/sessions")).json()
        assert views["nodes"][0]["draining"] is True

        cancelled = await client.delete(f"/ops/nodes/{node}/drain")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
        for sid in sids:
            await eventually(
                lambda sid=sid: status_of(sid, namespace),
                lambda v: v.status == SessionStatus.CONNECTED,
                timeout=90,
            )
        health = await eventually(
            lambda: client.get("/health"), lambda r: r.json()["status"] == "ok", timeout=60
        )
        assert health.json()["pending"] == {"count": 0, "oldestSeconds": None, "stalled": 0}
        views = (await client.get("/ops/sessions")).json()
        assert views["nodes"][0]["draining"] is False and views["nodes"][0]["sessions"] == CAPACITY


async def test_a_session_closed_by_a_mover_that_died_is_never_ready_and_gets_a_fresh_process(
    single_node: Stack, database_url: str
) -> None:
    """What a mover leaves behind if it dies between its close() and its kill: a process whose client is
    stopped. It must not look ready, and the registry gives the session a fresh process."""
    namespace = single_node.namespace
    registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
    sid = await insert_session(database_url, "closed")
    await registry.ensure_session.remote(sid)
    await pair(sid, namespace, "+15551330001")
    actor = handle(sid, namespace)
    before = await actor.ping.remote()
    await actor.close.remote(False)
    closed = await actor.ping.remote()
    assert closed.alive and not closed.ready and closed.stuck, closed
    back = await eventually(
        actor.ping.remote, lambda p: p.pid not in (None, before.pid) and p.ready, timeout=90
    )
    assert back.stuck is None
    await eventually(
        lambda: status_of(sid, namespace), lambda v: v.status == SessionStatus.CONNECTED, timeout=60
    )
