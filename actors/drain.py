"""Moving one session between nodes, and planning which to move: the steps of the registry's drains and
rebalances (`actors.operations`, which carries them out from rows in PostgreSQL).

A move is one reconnect and nothing else (no logout, no scan, no lost write):
1. the session is still where the operation saw it (every step pings it first: a session that is
   already elsewhere is not moved again), and its journal is empty (`ping().spooled == 0`): every
   write it took is in PostgreSQL. One whose database is away keeps its spool and is not moved yet:
   its spool lives on this node's disk, and the next incarnation runs on another node.
2. `close(purge=False)`: the client stops (WhatsApp queues what arrives meanwhile for the device, like
   for any reconnect), the journal applies what is left, and the actor answers the bytes still spooled.
   From then on its `ping` says it is not ready (`stuck`): if the mover dies here, the registry's
   supervision gives it a fresh process instead of leaving a number offline while it looks healthy.
3. the actor is killed without restart, and once its name is free the registry creates it anew: Ray
   places it off every drained node, or on the node a rebalance asks for. It resumes its stored device:
   `connected` again, no QR.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors import fleet
from kernel.domain import SessionStatus
from kernel.errors import Conflict, NotFound
from kernel.ids import actor_name

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 30.0
NAME_FREE_TIMEOUT_S = 30.0
RECONNECT_TIMEOUT_S = 120.0
SPOOL_WAIT_S = 10.0
ARRIVAL_POLL_S = 0.5


class NodeNotFound(NotFound):
    """No live node has that id (or the prefix given matches several)."""

    code = "node_not_found"
    default_message = "No live Ray node has that id (give at least 6 hex digits, unambiguous)"


class NoCapacity(Conflict):
    """The other nodes cannot hold a drained node's sessions; the message says how many are short."""

    code = "no_capacity"
    default_message = "The other nodes have no room for this node's sessions"


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

    def as_json(self) -> dict[str, Any]:
        """As stored in the operation's row and shown by the ops routes."""
        return {
            "sessionId": self.session_id,
            "fromNode": self.from_node,
            "toNode": self.to_node,
            "status": self.status.value if self.status else None,
            "spoolLeft": self.spool_left,
            "error": self.error,
        }


Create = Callable[[str, str | None], Awaitable[None]]


async def depart(
    namespace: str, session_id: str, from_node: str, create: Create, *, to_node: str | None = None
) -> Moved | Departed | None:
    """Steps 1-3 of a move off `from_node` (to `to_node` if given): the session has left and its next
    process is asked for (`Departed`; its `arrival()` waits for it), or it stays: `Moved` when it is no
    longer on `from_node` (naming where, no error) or has no actor, None while its writes are spooled.
    """
    handle = await asyncio.to_thread(_handle, namespace, session_id)
    if handle is None:
        return Moved(session_id, from_node, None, None, error="no actor")
    deadline = time.monotonic() + SPOOL_WAIT_S
    while True:
        before = await asyncio.wait_for(handle.ping.remote(), CALL_TIMEOUT_S)
        if before.node_id != from_node:
            return Moved(session_id, from_node, before.node_id, before.status)
        if not before.spooled or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
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
    return Departed(namespace, session_id, from_node, before.status, spool_left)


@dataclass(frozen=True, slots=True)
class Departed:
    """A session that has left `from_node` and whose next process was asked for (step 4 is `arrival`)."""

    namespace: str
    session_id: str
    from_node: str
    status: SessionStatus | None  # before the move: what it must be again
    spool_left: int

    async def arrival(self) -> Moved:
        """The move's outcome once the next process runs off `from_node` in its status again."""
        after = await _reconnected(self.namespace, self.session_id, self.from_node, self.status)
        return Moved(
            self.session_id,
            self.from_node,
            after.node_id if after else None,
            after.status if after else None,
            self.spool_left,
            None if after else "not running again within the timeout",
        )


def shortfall(
    nodes: list[fleet.Node], entries: list[fleet.ActorEntry], node_id: str, drained: set[str]
) -> int:
    """How many sessions a drain of `node_id` would leave with nowhere to go (0: the others hold them).

    The room is the free `wa_session` units of the other live nodes that no drain keeps empty; the
    sessions that need it are those on the node and those already waiting for a unit.
    """
    usable = {
        n.node_id: n.capacity
        for n in nodes
        if n.alive and not n.draining and n.node_id != node_id and n.node_id not in drained
    }
    room = sum(usable.values()) - sum(1 for e in entries if e.node_id in usable)
    needing = sum(1 for e in entries if e.node_id == node_id or e.node_id is None)
    return max(0, needing - max(0, room))


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


async def _reconnected(namespace: str, session_id: str, from_node: str, status: SessionStatus | None) -> Any:
    """The new actor's placement once it runs off `from_node` and is back in its status, or None.

    `to_node` is a preference (soft affinity): a full target leaves Ray free to place it elsewhere.
    Polled every ARRIVAL_POLL_S: the moves of a drain wait side by side, each with one ping at a time.
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
        await asyncio.sleep(ARRIVAL_POLL_S)
    return None
