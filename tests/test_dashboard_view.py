"""What the Ray dashboard's Actors view shows of the bridge: the GCS actor table it is drawn from holds,
for a session and for the registry, the name, the repr (`repr_name`), state ALIVE, node, pid and restart
count. The repr is read by Ray once per process, so a restarted process shows its new pid."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
import ray

from actors.registry import REGISTRY_NAME, start_registry
from kernel.domain import SessionStatus
from tests.raykit import eventually, insert_session, pid_of, registry_config, wait_status

pytestmark = pytest.mark.ray


def _actor_table(namespace: str) -> dict[str, Any]:
    """name → ActorTableData of every live actor of `namespace`, read from the GCS like the dashboard."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    table = {}
    for raw in accessor.get_actor_table(None, "ALIVE"):
        actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]
        if actor.ray_namespace == namespace:
            table[actor.name] = actor
    return table


async def _alive(namespace: str, name: str, check: Any = lambda a: True) -> Any:
    async def read() -> dict[str, Any]:
        return await asyncio.to_thread(_actor_table, namespace)

    table = await eventually(read, lambda t: name in t and check(t[name]), timeout=60)
    return table[name]


async def test_the_actor_table_shows_each_session_and_the_registry(
    database_url: str, redis_url: str, namespace: str
) -> None:
    sid = await insert_session(database_url)
    registry = start_registry(registry_config(database_url, redis_url, namespace))
    await registry.ensure_session.remote(sid)
    await wait_status(sid, namespace, SessionStatus.QR_READY)
    pid = await pid_of(sid, namespace)
    node = ray.get_runtime_context().get_node_id()

    session = await _alive(namespace, f"session-{sid}")
    assert session.class_name == "SimulatedSessionActor"  # the simulated backend's
    assert session.repr_name == (
        f"SessionActor(session={sid}, backend=simulated, node={node[:12]}, pid={pid}, start=first)"
    )
    assert session.state == session.ALIVE
    assert session.address.node_id.hex() == node
    assert session.pid == pid
    assert session.num_restarts == 0

    registry_row = await _alive(namespace, REGISTRY_NAME)
    assert registry_row.class_name == "SessionRegistry"
    assert registry_row.repr_name == (
        f"SessionRegistry(namespace={namespace}, node={node[:12]}, pid={registry_row.pid})"
    )
    assert registry_row.pid > 0 and registry_row.address.node_id.hex() == node

    # A crash: Ray restarts the process, and the table shows the new one and the restart.
    os.kill(pid, signal.SIGKILL)
    restarted = await _alive(namespace, f"session-{sid}", lambda a: a.num_restarts == 1 and a.pid != pid)
    new_pid = await pid_of(sid, namespace)
    assert restarted.pid == new_pid
    assert restarted.repr_name == (
        f"SessionActor(session={sid}, backend=simulated, node={node[:12]}, pid={new_pid}, start=restarted)"
    )
