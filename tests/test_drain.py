"""Draining a node on a real multi-node Ray (`ray.cluster_utils.Cluster`: a head and two workers): the
drain is a row, carried out by the registry.

Messages keep arriving on the simulated network while the sessions move; the test plays WhatsApp's
server: a message a session could not take (its process is stopping or not up yet) is offered again
later, and one it took must be in PostgreSQL exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from actors import fleet
from actors.calls import NetworkControls
from actors.registry import start_registry
from kernel.domain import SessionStatus
from tests.opskit import request_drain, wait_operation
from tests.raykit import (
    PATIENT_QR,
    Frames,
    control,
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
from tests.sessionkit import session_factory
from tests.sessionkit import wait_status as core_wait_status

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray]

SESSIONS = 4
PER_WORKER = 4


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, list[Any]]]:
    """A head without session capacity and two workers of PER_WORKER sessions each."""
    head = new_cluster(head_sessions=0)
    workers = [
        head.add_node(num_cpus=1, resources={"wa_session": PER_WORKER}, object_store_memory=80 * 1024 * 1024)
        for _ in range(2)
    ]
    ray.init(address=head.address, logging_level="WARNING", configure_logging=False)
    head.wait_for_nodes()
    yield head, workers
    ray.shutdown()
    head.shutdown()


class Network:
    """Offers incoming messages to the sessions until each is taken once (WhatsApp's offline queue)."""

    def __init__(self, namespace: str, sids: list[str]) -> None:
        self.namespace = namespace
        self.sids = sids
        self.taken: dict[str, str] = {}  # text -> session id
        self.refused = 0
        self._stop = asyncio.Event()
        self._counter = itertools.count()

    async def run(self) -> None:
        backlog: list[tuple[str, str]] = []
        while not self._stop.is_set() or backlog:
            if not self._stop.is_set():
                n = next(self._counter)
                backlog.append((self.sids[n % len(self.sids)], f"drain message {n}"))
            retry = []
            for sid, text in backlog:
                try:
                    await asyncio.wait_for(
                        control(handle(sid, self.namespace), NetworkControls.incoming)(
                            from_="+15550001111", text=text
                        ),
                        5,
                    )
                    self.taken[text] = sid
                except Exception:
                    self.refused += 1
                    retry.append((sid, text))
            backlog = retry
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()


async def _rows_by_text(database_url: str, sids: list[str]) -> Counter[str]:
    import asyncpg

    from kernel.settings import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT text FROM message WHERE session_id = ANY($1::uuid[]) AND text LIKE 'drain message %'",
            sids,
        )
    finally:
        await conn.close()
    return Counter(r["text"] for r in rows)


async def test_drain_moves_every_session_elsewhere_without_scan_or_lost_message(
    cluster: tuple[Cluster, list[Any]], database_url: str, redis_url: str
) -> None:
    _, workers = cluster
    namespace = unique_namespace()
    try:
        sids = [await insert_session(database_url, f"u{i}") for i in range(SESSIONS)]
        start_registry(registry_config(database_url, redis_url, namespace, session=PATIENT_QR))
        for i, sid in enumerate(sids):
            await pair(sid, namespace, f"+1555126000{i}")
        phones = {sid: (await status_of(sid, namespace)).phone for sid in sids}
        placed = {e.session_id: e.node_id for e in fleet.session_actors(namespace)}
        target = max((w.node_id for w in workers), key=lambda n: list(placed.values()).count(n))
        on_target = [sid for sid, node in placed.items() if node == target]
        assert on_target, placed

        async with AsyncExitStack() as stack:
            got: list[Frames] = [await stack.enter_async_context(frames(redis_url, sid)) for sid in sids]
            network = Network(namespace, sids)
            sender = asyncio.create_task(network.run())
            await eventually(lambda: asyncio.sleep(0, len(network.taken)), lambda n: n >= 8, timeout=30)
            requested = await request_drain(database_url, target, planned=len(on_target))
            seen: list[int] = []

            def progress(op: Any) -> bool:
                seen.append(op.left)
                return bool(op.state == "done")

            report = await wait_operation(database_url, requested.id, progress)
            taken_during = len(network.taken)
            await eventually(lambda: asyncio.sleep(0, len(network.taken)), lambda n: n >= taken_during + 8)
            network.stop()
            await asyncio.wait_for(sender, 60)

        assert report.left == 0 and report.planned == len(on_target), report
        assert sorted(m["sessionId"] for m in report.moved) == sorted(on_target)
        assert all(m["toNode"] and not m["error"] and m["spoolLeft"] == 0 for m in report.moved), report
        assert seen[0] > 0 and seen[-1] == 0, "progress was stored down to zero"
        assert fleet.sessions_on(namespace, target) == [], "the drained node holds no session"
        for sid in sids:
            view = await status_of(sid, namespace)
            assert view.status == SessionStatus.CONNECTED and view.phone == phones[sid], "device kept"
            where = await handle(sid, namespace).ping.remote()
            assert where.node_id != target
        for one in got:
            assert one.of("qr") == [], "no session asked for a scan"
            assert all(body.get("status") != "qr_ready" for body in one.of("status"))

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


async def test_a_graceful_stop_keeps_what_arrived_just_before_it(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The stop a move starts with: a message the network handed over (whatsmeow has acked it) right
    before `close(purge=False)` is in PostgreSQL afterwards, not dropped with the process."""
    async with session_factory(database_url, redis_url, tmp_path) as build:
        session, _ = await build()
        await core_wait_status(session, SessionStatus.QR_READY)
        await session.simulate("scan", phone="+15551299001", display_name=None)
        await core_wait_status(session, SessionStatus.CONNECTED)
        sid = session.session_id
        # Delivered and stopped in the same turn of the loop: the session has not read it yet.
        await session.simulate("incoming", from_="+15550002222", text="drain message last")
        await session.close(purge=False)
    rows = await _rows_by_text(database_url, [sid])
    assert rows == {"drain message last": 1}
