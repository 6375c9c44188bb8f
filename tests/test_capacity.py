"""The registry when no node has a free `wa_session` unit, on a real multi-node Ray (`ray.cluster_utils`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import pytest
import ray
from ray.cluster_utils import Cluster

from actors.registry import create_session_actor, start_registry
from kernel.domain import SessionStatus
from kernel.settings import asyncpg_dsn
from tests.raykit import (
    eventually,
    handle,
    insert_session,
    kill_namespace_actors,
    new_cluster,
    registry_config,
    registry_passes,
    unique_namespace,
    wait_status,
)

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray]


@pytest.fixture
def full_cluster() -> Iterator[Cluster]:
    """A head that runs the registry but holds no session (`wa_session: 0`), and no worker yet."""
    cluster = new_cluster(head_sessions=0)
    ray.init(address=cluster.address, logging_level="WARNING", configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


async def test_a_session_without_capacity_waits_and_runs_when_a_node_joins(
    full_cluster: Cluster, database_url: str, redis_url: str
) -> None:
    namespace = unique_namespace()
    try:
        sid = await insert_session(database_url)
        registry = start_registry(
            registry_config(
                database_url, redis_url, namespace, unresponsive_passes=2, reconcile_interval_s=0.5
            )
        )
        await eventually(registry.pending.remote, lambda p: p.session_ids == (sid,), timeout=30)
        actor_id = handle(sid, namespace)._actor_id
        # Three times the passes after which a silent actor is replaced.
        await registry_passes(registry, 3 * 2, timeout=90)
        pending = await registry.pending.remote()
        assert pending.count == 1 and pending.oldest_s is not None and pending.oldest_s >= 2.0, pending
        assert handle(sid, namespace)._actor_id == actor_id, "the waiting actor was killed and recreated"
        assert [s for s, _ in await registry.creations.remote()] == [sid], "created once"

        full_cluster.add_node(num_cpus=1, resources={"wa_session": 2}, object_store_memory=80 * 1024 * 1024)
        await wait_status(sid, namespace, SessionStatus.QR_READY, timeout=90)
        assert handle(sid, namespace)._actor_id == actor_id
        assert (await registry.pending.remote()).count == 0
    finally:
        kill_namespace_actors(namespace)


class ReplyGate:
    """A TCP relay to PostgreSQL that holds the first reply containing `marker` until `release()`.

    A held reply is a query PostgreSQL has already answered: whatever is committed meanwhile is absent
    from it. That is how a pass that read the rows "just before" an insert is made, deterministically.
    """

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._marker: bytes | None = None
        self.held = asyncio.Event()
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ReplyGate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open.set()
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def url_for(self, url: str) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{port}"))

    def hold(self, marker: bytes) -> None:
        self._marker = marker
        self._open.clear()

    def release(self) -> None:
        self._marker = None
        self._open.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        for task in (self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, True)):
            spawned = asyncio.create_task(task)
            self._tasks.add(spawned)
            spawned.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
        try:
            while data := await src.read(65_536):
                if replies and self._marker is not None and self._marker in data:
                    self.held.set()
                    await self._open.wait()
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()


async def test_an_actor_whose_row_appears_during_a_pass_is_never_stopped(
    full_cluster: Cluster, database_url: str, redis_url: str
) -> None:
    """POST /sessions inserts a row, then creates the actor, while a pass is between its steps.

    No grace at all: only the pass's order (actors listed before the rows are read) and the fresh look
    at the row before a stop protect the new session. Its actor waits for capacity (no process).
    """
    namespace = unique_namespace()
    up = urlsplit(database_url)
    try:
        async with ReplyGate(up.hostname or "127.0.0.1", up.port or 5432) as gate:
            direct = registry_config(
                database_url, redis_url, namespace, orphan_grace_s=0.0, reconcile_interval_s=0.05
            )
            config = replace(direct, database_dsn=asyncpg_dsn(gate.url_for(database_url)))
            await insert_session(database_url, "gate-marker-user")  # its row is in every pass's reply
            registry = start_registry(config)
            await registry_passes(registry, 1, timeout=90)
            gate.hold(b"gate-marker-user")
            await asyncio.wait_for(gate.held.wait(), 30)  # a pass has its rows, not yet the new one
            sid = await insert_session(database_url, "new-user")
            actor_id = create_session_actor(config, sid)._actor_id
            gate.release()
            await registry_passes(registry, 5, timeout=90)
            # A stopped actor has no name, or a new actor id once the registry recreated it.
            assert handle(sid, namespace)._actor_id == actor_id, "the new session's actor was stopped"
    finally:
        kill_namespace_actors(namespace)
