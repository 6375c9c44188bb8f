"""The registry carries out the drains and rebalances stored in PostgreSQL (`persistence.operations`).

Guarantees:
- An operation is a row before anything moves; the registry is the only process that moves sessions
  (one per namespace: a named actor), so one rebalance runs at a time cluster-wide, and a drain or a
  rebalance goes on after the API that asked for it, or the registry itself, dies: the next registry
  process reads the rows in force and resumes each from what the cluster looks like then.
- A drain is in force from its row until it is cancelled: while it is, no session is created on its
  node (a label selector on the node's id), and a session that lands there anyway (a restart Ray
  placed with the options it was created with) is moved again. Once the node holds no session the
  drain is `done`, and still in force; a cancelled drain frees its node for the next creations, and
  actors waiting to be placed are created anew without it in their selector.
- Every move pings the session first (`actors.drain.depart`): one that is not where the plan saw
  it is left alone. A session is moved by one operation at a time, and supervision leaves it alone
  while it is (its `ping` says stuck between its close and its kill). `moves_parallel` bounds the
  sessions leaving at once (ping, close, kill, create); waiting for the next process to connect holds
  no slot, so a drain's pace is the registry's, not the time a process takes to start.
- Progress is stored after every move; a cancelled operation stops before its next move.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import ray

from actors import fleet
from actors.drain import Departed, Moved, depart, plan_rebalance
from actors.ports import FleetStorePort
from actors.registry_config import RegistryConfig
from actors.registry_creations import Creations
from actors.registry_directory import SessionDirectory
from actors.supervision import Pacer
from actors.tasks import TaskGroup
from kernel.stored import Operation

log = logging.getLogger(__name__)

POLL_S = 1.0  # how soon a new or cancelled operation is seen
WATCH_S = 2.0  # how often a drained node is looked at for sessions that landed there again


class Operations:
    """Runs one task per operation in force; knows which nodes are drained and which sessions move."""

    def __init__(
        self,
        config: RegistryConfig,
        store: FleetStorePort,
        directory: SessionDirectory,
        creations: Creations,
        tasks: TaskGroup,
    ) -> None:
        self._config = config
        self._store = store
        self._directory = directory
        self._creations = creations
        self._tasks = tasks
        self._runners: dict[str, asyncio.Task[Any]] = {}  # operation id -> its task
        self._ended: set[str] = set()  # operations whose task ended in this process
        self._in_force: set[str] = set()  # operation ids, as of the last poll
        self._drained: frozenset[str] = frozenset()  # live nodes a drain keeps empty
        self._moving: set[str] = set()  # session ids being moved now
        self._pacer = Pacer(config.moves_per_s)
        self._gate = asyncio.Semaphore(max(1, config.moves_parallel))

    def moving(self) -> set[str]:
        return set(self._moving)

    async def run(self) -> None:
        """Poll the rows for ever; a failed poll is logged and retried."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.warning("registry: operations unreadable; retrying", exc_info=True)
            await asyncio.sleep(POLL_S)

    async def poll(self) -> None:
        found = await self._store.operations_in_force()
        self._in_force = {op.id for op in found}
        alive = {n.node_id for n in await asyncio.to_thread(fleet.nodes) if n.alive}
        self._exclude(frozenset(op.node_id for op in found if op.kind == "drain" and op.node_id in alive))
        for op in found:
            if op.id in self._runners or op.id in self._ended:
                continue
            run = self._drain(op) if op.kind == "drain" else self._rebalance(op)
            log.info("registry: %s %s (%s) taken up", op.kind, op.id, op.node_id or "cluster")
            self._runners[op.id] = self._tasks.spawn(self._ending(op.id, run), f"{op.kind} {op.id}")

    async def _ending(self, operation_id: str, run: Any) -> None:
        try:
            await run
        finally:
            self._runners.pop(operation_id, None)
            self._ended.add(operation_id)

    def _exclude(self, drained: frozenset[str]) -> None:
        if drained == self._drained:
            return
        released = self._drained - drained
        self._drained = drained
        self._creations.avoid(drained)
        if not released:
            return
        # Their label selector may name a node that takes sessions again: created anew without it.
        for sid in self._directory.unplaced() or ():
            handle = self._directory.handle(sid)
            if handle is not None:
                log.info("registry: session %s waits for a node; created again now that a drain ended", sid)
                ray.kill(handle, no_restart=True)

    def _live(self, op: Operation) -> bool:
        return op.id in self._in_force

    async def _record(self, op: Operation, progress: _Progress, state: str = "running") -> bool:
        return await self._store.record_operation(
            op.id,
            planned=progress.planned,
            left=progress.left,
            moved=[m.as_json() if isinstance(m, Moved) else m for m in progress.moved],
            waiting=progress.waiting,
            state=state,
        )

    async def _move(self, op: Operation, sid: str, src: str, dst: str | None) -> Moved | None:
        if sid in self._moving:
            return None
        self._moving.add(sid)
        try:
            async with self._gate:
                if not self._live(op):
                    return None
                await self._pacer.wait()
                left = await depart(self._config.namespace, sid, src, self._create, to_node=dst)
            return await left.arrival() if isinstance(left, Departed) else left
        except Exception as err:
            log.warning("move: session %s failed", sid, exc_info=True)
            return Moved(sid, src, None, None, error=type(err).__name__)
        finally:
            self._moving.discard(sid)

    async def _create(self, session_id: str, node_id: str | None) -> None:
        self._creations.create(session_id, node_id)

    async def _drain(self, op: Operation) -> None:
        node = op.node_id or ""
        progress = _Progress(op.planned, list(op.moved), [], op.left)
        state = op.state
        while self._live(op):
            live = {n.node_id for n in await asyncio.to_thread(fleet.nodes) if n.alive}
            on_node = await asyncio.to_thread(fleet.sessions_on, self._config.namespace, node)
            progress.left, progress.waiting = len(on_node), []
            if not on_node or node not in live:
                if state != "done":
                    log.info("registry: drain of node %s done; %d moved", node[:12], len(progress.moved))
                    state = "done"
                    if not await self._record(op, progress, state):
                        return
                if node not in live:
                    return  # gone: nothing can land on it again
                await asyncio.sleep(WATCH_S)
                continue
            if state == "done":
                log.warning(
                    "registry: %d sessions on drained node %s again; moving them", len(on_node), node[:12]
                )
            state = "running"
            progress.planned = max(progress.planned, len(progress.moved) + len(on_node))

            async def one(sid: str) -> None:
                moved = await self._move(op, sid, node, None)
                if moved is None:
                    if self._live(op):
                        progress.waiting.append(sid)
                    return
                progress.moved.append(moved)
                progress.left = max(0, progress.left - 1)
                await self._record(op, progress)

            await asyncio.gather(*(one(sid) for sid in on_node))
            await asyncio.sleep(POLL_S)
        log.info("registry: drain of node %s cancelled; it takes sessions again", node[:12])

    async def _rebalance(self, op: Operation) -> None:
        nodes = [
            dataclasses.replace(n, draining=n.draining or n.node_id in self._drained)
            for n in await asyncio.to_thread(fleet.nodes)
        ]
        entries = await asyncio.to_thread(fleet.session_actors, self._config.namespace)
        placed = {e.session_id: e.node_id for e in entries if e.node_id}
        moves = plan_rebalance(nodes, placed)
        progress = _Progress(len(op.moved) + len(moves), list(op.moved), [], len(moves))
        log.info("registry: rebalance %s: %d moves planned over %d sessions", op.id, len(moves), len(placed))
        await self._record(op, progress)

        async def one(sid: str, src: str, dst: str) -> None:
            moved = await self._move(op, sid, src, dst)
            if moved is None:
                progress.waiting.append(sid)
            else:
                progress.moved.append(moved)
            progress.left -= 1
            await self._record(op, progress)

        await asyncio.gather(*(one(sid, src, dst) for sid, src, dst in moves))
        await self._record(op, progress, "done")
        log.info(
            "registry: rebalance %s done: %d moved, %d waiting for their spool",
            op.id,
            len(progress.moved) - len(op.moved),
            len(progress.waiting),
        )


@dataclasses.dataclass(slots=True)
class _Progress:
    planned: int
    moved: list[Moved | dict[str, Any]]  # stored moves come back as their JSON
    waiting: list[str]
    left: int
