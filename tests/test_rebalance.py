"""Rebalancing after a node joins, and draining it again, through the commands an operator types
(`whatsapp-bridge rebalance`, `whatsapp-bridge drain NODE`) against a real API on a multi-node Ray."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from actors import fleet
from actors.drain import plan_rebalance
from kernel.domain import SessionStatus
from tests.apikit import Stack, api_stack
from tests.clikit import clean_env, command
from tests.raykit import Frames, frames, insert_session, new_cluster, pair, status_of

pytestmark = pytest.mark.own_ray

PER_NODE = 4
NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def _node(node_id: str, capacity: int, *, draining: bool = False) -> fleet.Node:
    return fleet.Node(node_id, True, draining, capacity, "10.0.0.1", False)


def test_plan_brings_each_node_within_one_session_of_its_capacity_share() -> None:
    full = {f"s{i}": "a" for i in range(10)}
    moves = plan_rebalance([_node("a", 10), _node("b", 5), _node("c", 5)], full)
    after = Counter(full.values())
    for _, src, dst in moves:
        after[src] -= 1
        after[dst] += 1
    assert after == {"a": 5, "b": 3, "c": 2} or after == {"a": 5, "b": 2, "c": 3}
    assert len({sid for sid, _, _ in moves}) == len(moves) == 5, "each session moves at most once"
    # Odd counts: within one session, not exact. Already balanced or nowhere to go: no move.
    assert len(plan_rebalance([_node("a", 6), _node("b", 6)], {f"s{i}": "a" for i in range(5)})) == 2
    assert plan_rebalance([_node("a", 4), _node("b", 4)], {"s1": "a", "s2": "b"}) == []
    assert (
        plan_rebalance([_node("a", 4), _node("b", 4, draining=True)], {f"s{i}": "a" for i in range(4)}) == []
    )
    # Sessions on a draining node are the drain's, not the rebalance's.
    assert plan_rebalance([_node("a", 2), _node("b", 2), _node("c", 4, draining=True)], {"s1": "c"}) == []


@pytest.fixture
def one_worker() -> Iterator[tuple[Cluster, Any]]:
    cluster = new_cluster(head_sessions=0)
    worker = cluster.add_node(resources={"wa_session": PER_NODE}, **NODE_ARGS)
    ray.init(address=cluster.address, logging_level="WARNING", configure_logging=False)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(WHATSAPP_BRIDGE_URL=stack.base_url, WHATSAPP_BRIDGE_API_KEY=stack.api_key)
    return subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=300)


def _connects(got: Frames, since: int) -> int:
    return sum(
        1 for kind, body in got.items[since:] if kind == "status" and body.get("status") == "connected"
    )


@pytest.mark.ray
@pytest.mark.cluster
async def test_rebalance_onto_a_new_node_then_drain_it(
    one_worker: tuple[Cluster, Any], database_url: str, redis_url: str
) -> None:
    cluster, first = one_worker
    with api_stack(database_url, redis_url, session={"qr_first_s": 300.0}) as stack:
        namespace = stack.namespace
        registry = ray.get_actor("session-registry", namespace=namespace)
        sids = [await insert_session(database_url, f"rb{i}") for i in range(PER_NODE)]
        for sid in sids:
            await registry.ensure_session.remote(sid)
        for i, sid in enumerate(sids):
            await pair(sid, namespace, f"+1555128000{i}")
        phones = {sid: (await status_of(sid, namespace)).phone for sid in sids}
        assert set(fleet.sessions_on(namespace, first.node_id)) == set(sids), "the cluster is full"

        second = cluster.add_node(resources={"wa_session": PER_NODE}, **NODE_ARGS)
        cluster.wait_for_nodes()
        async with AsyncExitStack() as stack_:
            got = {sid: await stack_.enter_async_context(frames(redis_url, sid)) for sid in sids}
            await asyncio.sleep(0.3)
            marks = {sid: len(got[sid].items) for sid in sids}
            result = await asyncio.to_thread(_cli, stack, "rebalance")
            assert result.returncode == 0, result.stdout + result.stderr
            assert "2 moved, 0 left" in result.stdout, result.stdout
            where = {e.session_id: e.node_id for e in fleet.session_actors(namespace)}
            assert Counter(where.values()) == {first.node_id: 2, second.node_id: 2}
            moved = {sid for sid in sids if where[sid] == second.node_id}
            for sid in sids:
                view = await status_of(sid, namespace)
                assert view.status == SessionStatus.CONNECTED and view.phone == phones[sid]
                # One reconnect per moved session, none for the others; never a QR.
                assert _connects(got[sid], marks[sid]) == (1 if sid in moved else 0), got[sid].items
                assert got[sid].of("qr") == []

            # Maintenance on the new node: drain it; its sessions go back to the first one.
            marks = {sid: len(got[sid].items) for sid in sids}
            result = await asyncio.to_thread(_cli, stack, "drain", second.node_id[:10])
            assert result.returncode == 0, result.stdout + result.stderr
            assert "2 moved, 0 left" in result.stdout, result.stdout
            assert fleet.sessions_on(namespace, second.node_id) == []
            for sid in sids:
                assert (await status_of(sid, namespace)).status == SessionStatus.CONNECTED
                assert _connects(got[sid], marks[sid]) == (1 if sid in moved else 0)
                assert got[sid].of("qr") == []
            # The drain stays in force once the node is empty: the API shows it draining, and a session
            # created now waits for a unit rather than take one of the drained node's (the first is full).
            async with stack.client() as client:
                view = (await client.get("/ops/sessions")).json()
            draining = {n["nodeId"]: n["draining"] for n in view["nodes"]}
            assert draining[second.node_id] and not draining[first.node_id], draining
            late = await insert_session(database_url, "rb-late")
            await registry.ensure_session.remote(late)
            await asyncio.sleep(5)
            entries = {e.session_id: e for e in fleet.session_actors(namespace)}
            assert entries[late].state == "PENDING_CREATION" and entries[late].node_id is None, entries[late]
            await registry.destroy_session.remote(late)
        assert set(fleet.sessions_on(namespace, first.node_id)) == set(sids)
