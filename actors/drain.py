"""Moving sessions between nodes: drain a node before maintenance, rebalance after nodes join.

A move is one reconnect and nothing else (no logout, no scan, no lost write):
1. the session's journal is empty (`ping().spooled == 0`): every write it took is in PostgreSQL. One
   whose database is away keeps its spool and is not moved yet: its spool lives on this node's disk,
   and the next incarnation runs on another node, so it could not apply it.
2. `close(purge=False)`: the client stops (WhatsApp queues what arrives meanwhile for the device, like
   for any reconnect), the journal applies what is left, and the actor answers the bytes still spooled.
3. the actor is killed without restart, and once its name is free the registry creates it anew
   (`ensure_session`): Ray places it on another node (a draining node takes nothing new), or on the
   node a rebalance asks for. It resumes its stored device: `connected` again, no QR.

Moves are staggered (`moves_per_s`) with at most `parallel` in flight, like the registry's creations.
Draining marks the node with Ray's drain API first (`GcsClient.drain_node`, reason PREEMPTION, no
deadline: what `ray drain-node` does), so nothing new is placed there. Ray cannot undo it, and it
stops the node's raylet once the node is idle (measured with Ray 2.60: within a second of its last
actor leaving); after maintenance, `ray start` on the machine joins it again as a new node. Both
operations are idempotent: run again, they go on where an interrupted run stopped. Every function
needs a connected Ray driver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors import fleet
from actors.supervision import Pacer
from kernel.domain import SessionStatus
from kernel.errors import InvalidInput, NotFound
from kernel.ids import actor_name

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 30.0
NAME_FREE_TIMEOUT_S = 30.0
RECONNECT_TIMEOUT_S = 120.0
SPOOL_WAIT_S = 10.0


class NodeNotFound(NotFound):
    """No live node has that id (or the prefix given matches several)."""

    code = "node_not_found"
    default_message = "No live Ray node has that id (give at least 6 hex digits, unambiguous)"


@dataclass(frozen=True, slots=True)
class Moved:
    session_id: str
    from_node: str
    to_node: str | None  # None: not placed again within the timeout
    status: SessionStatus | None  # after the move
    spool_left: int = 0  # bytes left on the old node's disk (0: everything reached PostgreSQL)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.to_node is not None


@dataclass(slots=True)
class Progress:
    """What a drain or a rebalance has done so far (handed to `on_progress` after each move)."""

    operation: str
    node_id: str | None
    planned: int
    moved: list[Moved] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # not moved yet: writes still spooled
    left: int = 0  # sessions still on the drained node (drain) / moves not done (rebalance)
    started: float = field(default_factory=time.monotonic)
    done: bool = False

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def failed(self) -> list[Moved]:
        return [m for m in self.moved if not m.ok]


OnProgress = Callable[[Progress], None]
Create = Callable[[str, str | None], Awaitable[None]]


def registry_create(namespace: str) -> Create:
    """Creation through the registry: `ensure_session(session_id, node_id)`."""
    from actors.registry import get_registry

    async def create(session_id: str, node_id: str | None) -> None:
        registry = await asyncio.to_thread(get_registry, namespace)
        await asyncio.wait_for(registry.ensure_session.remote(session_id, node_id), CALL_TIMEOUT_S)

    return create


def mark_draining(node_id: str) -> None:
    """Ask Ray to place nothing new on the node (idempotent; RuntimeError if the GCS refuses)."""
    import ray
    from ray.core.generated import autoscaler_pb2

    client = ray._private.worker.global_worker.gcs_client  # type: ignore[attr-defined]
    reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")  # type: ignore[attr-defined]
    accepted, why = client.drain_node(node_id, reason, "whatsapp-bridge drain", 0)
    if not accepted:
        raise RuntimeError(f"Ray refused to drain node {node_id}: {why}")


async def move_session(
    namespace: str, session_id: str, *, to_node: str | None = None, create: Create | None = None
) -> Moved | None:
    """Move one session off its node (to `to_node` if given); None when its writes are still spooled."""
    create = create or registry_create(namespace)
    handle = await asyncio.to_thread(_handle, namespace, session_id)
    if handle is None:
        return Moved(session_id, "", None, None, error="no actor")
    before = await asyncio.wait_for(handle.ping.remote(), CALL_TIMEOUT_S)
    from_node = before.node_id or ""
    deadline = time.monotonic() + SPOOL_WAIT_S
    while before.spooled and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        before = await asyncio.wait_for(handle.ping.remote(), CALL_TIMEOUT_S)
    if before.spooled:
        log.warning("move: session %s has %d writes spooled; not moving it yet", session_id, before.spooled)
        return None
    log.info("move: session %s leaving node %s", session_id, from_node[:12])
    spool_left = 0
    try:
        spool_left = int(await asyncio.wait_for(handle.close.remote(False), CLOSE_TIMEOUT_S) or 0)
    except Exception:
        log.warning("move: session %s did not close cleanly", session_id, exc_info=True)
    if spool_left:
        log.error(
            "move: session %s left %d spooled bytes on node %s (its next process takes them over)",
            session_id,
            spool_left,
            from_node,
        )
    import ray

    ray.kill(handle, no_restart=True)
    await _name_freed(namespace, session_id)
    await create(session_id, to_node)
    after = await _reconnected(namespace, session_id, from_node, to_node, before.status)
    return Moved(
        session_id,
        from_node,
        after.node_id if after else None,
        after.status if after else None,
        spool_left,
        None if after else "not running again within the timeout",
    )


async def drain(
    namespace: str,
    node_id: str,
    *,
    moves_per_s: float = 2.0,
    parallel: int = 4,
    timeout_s: float = 1800.0,
    create: Create | None = None,
    on_progress: OnProgress | None = None,
) -> Progress:
    """Move every session off `node_id` (a full id or a unique prefix); returns when it holds none."""
    node = await asyncio.to_thread(fleet.find_node, node_id)
    if node is None:
        raise NodeNotFound()
    await asyncio.to_thread(mark_draining, node.node_id)
    on_node = await asyncio.to_thread(fleet.sessions_on, namespace, node.node_id)
    progress = Progress("drain", node.node_id, planned=len(on_node), left=len(on_node))
    log.info("drain: node %s marked draining; %d sessions to move", node.node_id, len(on_node))
    pacer, gate = Pacer(moves_per_s), asyncio.Semaphore(max(1, parallel))
    deadline = time.monotonic() + timeout_s
    while on_node and time.monotonic() < deadline:
        progress.waiting = []

        async def one(sid: str) -> None:
            async with gate:
                await pacer.wait()
                moved = await _try_move(namespace, sid, None, create)
                if moved is None:
                    progress.waiting.append(sid)
                else:
                    progress.moved.append(moved)
                progress.left = max(0, progress.left - (moved is not None))
                if on_progress:
                    on_progress(progress)

        await asyncio.gather(*(one(sid) for sid in on_node))
        on_node = await asyncio.to_thread(fleet.sessions_on, namespace, node.node_id)
        progress.left = len(on_node)
        if on_node:
            await asyncio.sleep(1.0)
    progress.done = not on_node
    log.info(
        "drain: node %s %s; %d moved (%d failed) in %.1fs",
        node.node_id,
        "holds no session" if progress.done else f"still holds {len(on_node)} sessions",
        len(progress.moved),
        len(progress.failed),
        progress.elapsed_s,
    )
    if on_progress:
        on_progress(progress)
    return progress


def plan_rebalance(nodes: list[fleet.Node], placed: dict[str, str]) -> list[tuple[str, str, str]]:
    """Moves (session, from node, to node) that bring every node to less than one session from its share.

    A node's share is the sessions placed times its `wa_session` capacity over the total capacity of
    the live, non-draining nodes (6 sessions on two equal nodes: 3 and 3; 5: 3 and 2). Moves go from
    the node furthest above its share to the one furthest below, one at a time, never past a node's
    capacity.
    """
    usable = {n.node_id: n.capacity for n in nodes if n.alive and not n.draining and n.capacity > 0}
    total_cap = sum(usable.values())
    on_usable = {sid: node for sid, node in placed.items() if node in usable}
    if not total_cap or not on_usable:
        return []
    count = Counter({node: 0 for node in usable})
    count.update(on_usable.values())
    share = {node: len(on_usable) * cap / total_cap for node, cap in usable.items()}
    by_node: dict[str, list[str]] = {node: [] for node in usable}
    for sid, node in sorted(on_usable.items()):
        by_node[node].append(sid)
    moves: list[tuple[str, str, str]] = []
    while True:
        src = max(usable, key=lambda n: (count[n] - share[n], n))
        room = [n for n in usable if count[n] < usable[n]]
        if not room or not by_node[src]:
            return moves
        dst = min(room, key=lambda n: (count[n] - share[n], n))
        if count[src] - share[src] < 1 and share[dst] - count[dst] < 1:
            return moves
        # Each move lowers the sum of squared distances to the shares: the loop ends.
        sid = by_node[src].pop()
        moves.append((sid, src, dst))
        count[src] -= 1
        count[dst] += 1


async def rebalance(
    namespace: str,
    *,
    moves_per_s: float = 2.0,
    parallel: int = 4,
    create: Create | None = None,
    on_progress: OnProgress | None = None,
) -> Progress:
    """Move sessions from the fullest nodes to the emptiest until each is within one of its share."""
    nodes = await asyncio.to_thread(fleet.nodes)
    entries = await asyncio.to_thread(fleet.session_actors, namespace)
    placed = {e.session_id: e.node_id for e in entries if e.node_id}
    moves = plan_rebalance(nodes, placed)
    progress = Progress("rebalance", None, planned=len(moves), left=len(moves))
    log.info("rebalance: %d moves planned over %d sessions", len(moves), len(placed))
    pacer, gate = Pacer(moves_per_s), asyncio.Semaphore(max(1, parallel))

    async def one(sid: str, dst: str) -> None:
        async with gate:
            await pacer.wait()
            moved = await _try_move(namespace, sid, dst, create)
            if moved is None:
                progress.waiting.append(sid)
            else:
                progress.moved.append(moved)
            progress.left -= 1
            if on_progress:
                on_progress(progress)

    await asyncio.gather(*(one(sid, dst) for sid, _, dst in moves))
    progress.done = True
    log.info(
        "rebalance: %d moved (%d failed, %d waiting for their spool) in %.1fs",
        len(progress.moved),
        len(progress.failed),
        len(progress.waiting),
        progress.elapsed_s,
    )
    if on_progress:
        on_progress(progress)
    return progress


def validate_node_id(node_id: str) -> str:
    """A node id as given by an operator: hex, 6..56 characters (a prefix is enough when unique)."""
    value = node_id.strip().lower()
    if not 6 <= len(value) <= 56 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput("a node id is 6 to 56 hexadecimal characters")
    return value


# ---------------------------------------------------------------------------- internals


async def _try_move(namespace: str, sid: str, to_node: str | None, create: Create | None) -> Moved | None:
    try:
        return await move_session(namespace, sid, to_node=to_node, create=create)
    except Exception as err:
        log.warning("move: session %s failed", sid, exc_info=True)
        return Moved(sid, "", None, None, error=type(err).__name__)


def _handle(namespace: str, session_id: str) -> Any:
    import ray

    try:
        return ray.get_actor(actor_name(session_id), namespace=namespace)
    except ValueError:
        return None


async def _name_freed(namespace: str, session_id: str) -> None:
    deadline = time.monotonic() + NAME_FREE_TIMEOUT_S
    while await asyncio.to_thread(_handle, namespace, session_id) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the actor of session {session_id} kept its name after being killed")
        await asyncio.sleep(0.05)


async def _reconnected(
    namespace: str, session_id: str, from_node: str, to_node: str | None, status: SessionStatus | None
) -> Any:
    """The new actor's placement once it runs off `from_node` and is back in its status, or None.

    `to_node` is a preference (soft affinity): a full target leaves Ray free to place it elsewhere.
    """
    deadline = time.monotonic() + RECONNECT_TIMEOUT_S
    while time.monotonic() < deadline:
        handle = await asyncio.to_thread(_handle, namespace, session_id)
        if handle is not None:
            try:
                placement = await asyncio.wait_for(handle.ping.remote(), CALL_TIMEOUT_S)
            except Exception:
                placement = None
            if (
                placement is not None
                and placement.node_id not in (None, from_node)
                and placement.ready
                and (status != SessionStatus.CONNECTED or placement.status == SessionStatus.CONNECTED)
            ):
                return placement
        await asyncio.sleep(0.2)
    return None
