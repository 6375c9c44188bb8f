"""Nodes that Ray is taking away: the registry turns each into a forced drain (`actors.operations`).

Ray marks a node draining, with a deadline, before it goes: `ray drain-node`, the autoscaler's idle
termination, `ray start --block` on SIGTERM (compose, systemd) and a KubeRay worker pod's preStop
(`whatsapp-bridge leave`). From then on Ray places nothing there, and once the node holds nothing its
raylet exits by itself. Guarantees:
- A draining node that holds sessions gets the drain row the API's drain stores, forced (the node goes
  whatever room the others have), within POLL_S; the registry moves its sessions as for any drain: no
  logout, journal applied, created anew elsewhere. Its sessions then leave it before the deadline when
  the deadline leaves them the time (README "Operations": a move's cost per session).
- One drain per node and registry process: a drain that an operator cancels is not started again by
  this process (a restarted registry starts it again if Ray still says the node is going).
- A draining node without sessions gets no row: Ray places nothing there anyway.
- Once a draining node holds no session and its spool keeper (`actors.spool_keeper`) holds no file
  (every moved session took its files over), the keeper is stopped: a live actor keeps a node busy,
  and Ray stops a drained node only once nothing runs there. (A keeper of a node that is idle without
  a drain, which the autoscaler removes, leaves by itself: `SpoolKeeperActor`.)
"""

from __future__ import annotations

import asyncio
import logging
import time

import ray

from actors import fleet
from actors.ports import FleetStorePort
from actors.spool_keeper import keeper_name

log = logging.getLogger(__name__)

POLL_S = 1.0
CALL_TIMEOUT_S = 5.0


class NodeExits:
    """Watches Ray's draining nodes; starts a forced drain for each that holds sessions."""

    def __init__(self, namespace: str, store: FleetStorePort) -> None:
        self._namespace = namespace
        self._store = store
        self._started: set[str] = set()  # node ids whose drain this process started (or found)

    async def run(self) -> None:
        """Poll Ray for ever; a failed poll is logged and retried."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.warning("registry: Ray's draining nodes unreadable; retrying", exc_info=True)
            await asyncio.sleep(POLL_S)

    async def poll(self) -> None:
        going = await asyncio.to_thread(fleet.draining)
        if not going:
            return
        entries = await asyncio.to_thread(fleet.session_actors, self._namespace)
        for node, deadline_ms in sorted(going.items()):
            held = sum(1 for e in entries if e.node_id == node)
            if not held:
                await self._release_keeper(node)
                continue
            if node in self._started:
                continue
            op = await self._store.start_drain(node, forced=True, planned=held)
            self._started.add(node)
            left = f"{deadline_ms / 1000 - time.time():.0f}s" if deadline_ms else "no deadline"
            log.warning(
                "registry: Ray is draining node %s (%s left); moving its %d sessions (drain %s)",
                node[:12],
                left,
                held,
                op.id,
            )

    async def _release_keeper(self, node_id: str) -> None:
        """Stop the emptied node's spool keeper once it holds no file."""
        name = keeper_name(node_id)
        # In the namespace of the job whose session process created it, whichever that was.
        found = [e for e in ray.util.list_named_actors(all_namespaces=True) if e["name"] == name]
        if not found:
            return
        try:
            keeper = ray.get_actor(name, namespace=found[0]["namespace"])
        except ValueError:
            return
        try:
            held: int = await asyncio.wait_for(keeper.holds.remote(), CALL_TIMEOUT_S)
        except Exception:
            log.warning("registry: the spool keeper of node %s did not answer", node_id[:12], exc_info=True)
            return
        if held:
            return  # files not taken over yet: they stay until their session's next process asks
        ray.kill(keeper, no_restart=True)
        log.info(
            "registry: node %s is empty; its spool keeper stops so that Ray can stop the node", node_id[:12]
        )
