"""Reads while a session waits for capacity: its node is gone and no other has a free `wa_session` unit,
so it has no process at all. Every read still answers 200 from PostgreSQL, with `live` false."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from actors.registry import REGISTRY_NAME
from tests.apikit import api_stack, new_user
from tests.raykit import eventually, new_cluster
from tests.readkit import FAST_BEAT, connected_inbox, read_all, same_inbox, status

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray, pytest.mark.timeout(300)]

NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
PENDING_READS_S = 8.0  # how long the reads go on while the session waits


@pytest.fixture
def one_worker() -> Iterator[tuple[Cluster, Any]]:
    """A head that holds no session and one worker that holds one."""
    cluster = new_cluster(head_sessions=0)
    worker = cluster.add_node(resources={"wa_session": 1}, **NODE_ARGS)
    ray.init(address=cluster.address, logging_level="WARNING", configure_logging=False)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


async def test_every_read_answers_while_the_session_waits_for_capacity(
    one_worker: tuple[Cluster, Any], database_url: str, redis_url: str
) -> None:
    cluster, worker = one_worker
    with api_stack(database_url, redis_url, session=FAST_BEAT) as stack:
        async with stack.client(new_user()) as client:
            inbox = await connected_inbox(client, database_url)
            before = await read_all(client, inbox)
            assert before.status["live"] is True

            cluster.remove_node(worker)  # the only node with a free unit is gone
            registry = ray.get_actor(REGISTRY_NAME, namespace=stack.namespace)
            await eventually(registry.pending.remote, lambda p: inbox.sid in p.session_ids, timeout=60)
            await eventually(lambda: status(client, inbox.sid), lambda s: s["live"] is False, 10)
            rounds = 0
            until = time.monotonic() + PENDING_READS_S
            while time.monotonic() < until:
                got = await read_all(client, inbox)  # every answer a 200
                rounds += 1
                assert same_inbox(got, before), (got, before)
                assert got.status["live"] is False, got.status
            assert inbox.sid in (await registry.pending.remote()).session_ids, "it waited all along"
            assert rounds > 10

            cluster.add_node(resources={"wa_session": 1}, **NODE_ARGS)  # capacity again: it runs, live
            back = await eventually(
                lambda: status(client, inbox.sid), lambda s: s["live"] and s["status"] == "connected", 90
            )
            assert back["phone"] == inbox.phone
