"""What the cluster holds, for operators: nodes (capacity, draining) and every session's process.

Read from Ray's GCS without the dashboard (its state API needs it in 2.60), like `actors.actor_states`:
the node table through the driver's `GcsClient` and the actor table through `ray._private.state`. Both
are private Ray APIs (the ones `ray drain-node` and `ray.util.list_named_actors` use); a change in them
surfaces as an exception here. Every function needs a connected Ray driver (`ray.init`) and blocks on
the GCS: call it from a thread when on an event loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from actors.actor_states import UNPLACED_STATES
from kernel.domain import SessionStatus
from kernel.ids import session_id_of_actor

CAPACITY_RESOURCE = "wa_session"  # the same unit the registry asks for (actors.registry)
CALL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    alive: bool
    draining: bool
    capacity: int  # `wa_session` units it advertises (0: it holds no session)
    address: str
    is_head: bool


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A session process as it sees itself (`SessionActor.process`)."""

    pid: int
    started_at: float  # unix time
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class ActorEntry:
    """A session's actor in the GCS: where Ray placed it and how often it restarted it."""

    session_id: str
    state: str  # ALIVE, PENDING_CREATION, RESTARTING, DEPENDENCIES_UNREADY
    node_id: str | None
    pid: int | None
    restarts: int


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One line of `whatsapp-bridge sessions` / `GET /ops/sessions`."""

    session_id: str
    state: str
    node_id: str | None
    pid: int | None
    status: SessionStatus | None
    uptime_s: float | None
    restarts: int
    rss_bytes: int | None


def nodes() -> list[Node]:
    """Every node the GCS knows, alive or not."""
    import ray
    from ray.core.generated import gcs_pb2

    client = ray._private.worker.global_worker.gcs_client  # type: ignore[attr-defined]
    found = []
    for node_id, info in client.get_all_node_info().items():
        found.append(
            Node(
                node_id=node_id.hex(),
                alive=info.state == gcs_pb2.GcsNodeInfo.ALIVE,  # type: ignore[attr-defined]
                draining=info.state_snapshot.state == gcs_pb2.NodeSnapshot.DRAINING,  # type: ignore[attr-defined]
                capacity=int(info.resources_total.get(CAPACITY_RESOURCE, 0)),
                address=info.node_manager_address,
                is_head=info.is_head_node,
            )
        )
    return sorted(found, key=lambda n: n.node_id)


def find_node(node_id: str, *, alive: bool = True) -> Node | None:
    """The (live) node whose id is `node_id` or starts with it (at least 6 hex digits, unambiguous)."""
    wanted = node_id.strip().lower()
    if len(wanted) < 6:
        return None
    matches = [n for n in nodes() if (n.alive or not alive) and n.node_id.startswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def session_actors(namespace: str) -> list[ActorEntry]:
    """Every session actor of `namespace` that is placed or waiting to be (dead ones excluded)."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    entries = []
    for state_name in ("ALIVE", *UNPLACED_STATES):
        for raw in accessor.get_actor_table(None, state_name):
            actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]
            sid = session_id_of_actor(actor.name) if actor.ray_namespace == namespace else None
            if sid is None:
                continue
            placed = state_name == "ALIVE"
            node = actor.address.node_id.hex() if placed and actor.address.node_id else None
            entries.append(
                ActorEntry(sid, state_name, node, actor.pid if placed else None, actor.num_restarts)
            )
    return sorted(entries, key=lambda e: e.session_id)


def sessions_on(namespace: str, node_id: str) -> list[str]:
    """Session ids whose actor runs on `node_id`."""
    return [e.session_id for e in session_actors(namespace) if e.node_id == node_id]


async def session_rows(namespace: str) -> list[SessionRow]:
    """Every session actor with its node, pid, status, uptime, restarts and memory (asked of each)."""
    entries = await asyncio.to_thread(session_actors, namespace)
    return list(await asyncio.gather(*(_row(namespace, e) for e in entries)))


async def _row(namespace: str, entry: ActorEntry) -> SessionRow:
    row = SessionRow(
        entry.session_id, entry.state, entry.node_id, entry.pid, None, None, entry.restarts, None
    )
    if entry.state != "ALIVE":
        return row
    handle = await asyncio.to_thread(_handle, namespace, entry.session_id)
    if handle is None:
        return row
    try:
        placement, process = await asyncio.wait_for(
            asyncio.gather(handle.ping.remote(), handle.process.remote()), CALL_TIMEOUT_S
        )
    except Exception:  # not answering: listed with what the GCS says
        return row
    info: ProcessInfo = process
    return SessionRow(
        entry.session_id,
        entry.state,
        placement.node_id or entry.node_id,
        info.pid,
        placement.status,
        max(0.0, time.time() - info.started_at),
        entry.restarts,
        info.rss_bytes,
    )


def _handle(namespace: str, session_id: str) -> Any:
    import ray

    from kernel.ids import actor_name

    try:
        return ray.get_actor(actor_name(session_id), namespace=namespace)
    except ValueError:
        return None


def own_process() -> ProcessInfo:
    """This process's pid, start time and resident memory."""
    import os

    import psutil

    proc = psutil.Process(os.getpid())
    return ProcessInfo(pid=proc.pid, started_at=proc.create_time(), rss_bytes=proc.memory_info().rss)
