"""Prometheus metrics (no API key, like /health: scraped from inside the deployment)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field

from actors import drain, fleet
from api.deps import Resources, require_api_key
from api.errors import error_responses
from api.schemas import ApiModel
from api.unavailable import RETRY_AFTER_S, ActorUnreachable, ray_unavailable
from kernel.domain import SessionStatus
from kernel.errors import NotFound, WaError
from kernel.outages import REFUSES_WRITES, refusals
from kernel.stored import Operation
from persistence import operations, repo
from persistence.db import read_only

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])

T = TypeVar("T")
OPS_TIMEOUT_S = 10.0
PENDING_TIMEOUT_S = 2.0

NodeId = Annotated[
    str,
    Path(
        alias="nodeId",
        description="A Ray node id (hex), or a unique prefix of at least 6 digits",
        pattern="^[0-9a-fA-F]{6,56}$",
    ),
]


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
)
async def metrics(res: Resources) -> Response:
    """Requests by route and status, latency, sessions by status and waiting for capacity, events fanned
    out, WebSocket clients."""
    try:
        counts = await res.db.run(repo.session_status_counts)
    except WaError:
        counts = None  # keep the last values: a scrape must not fail because the database did
    if counts is not None:
        for state in SessionStatus:
            res.metrics.sessions.labels(status=state.value).set(counts.get(state.value, 0))
    try:
        pending = await asyncio.wait_for(res.actors.pending(timeout_s=PENDING_TIMEOUT_S), PENDING_TIMEOUT_S)
    except (WaError, TimeoutError):
        pending = None  # the registry is away: keep the last values, like the database's
    if pending is not None:
        res.metrics.sessions_pending.set(pending.count)
        res.metrics.sessions_pending_oldest.set(pending.oldest_s or 0.0)
    await _write_metrics(res)
    return Response(generate_latest(res.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _write_metrics(res: Resources) -> None:
    """Writes spooled, set aside and refused; what cannot be read now keeps its last value."""
    try:
        journals = await asyncio.wait_for(res.actors.writes(timeout_s=PENDING_TIMEOUT_S), PENDING_TIMEOUT_S)
    except (WaError, TimeoutError):
        journals = None
    try:
        read_only_now: bool | None = await res.db.run(read_only)
    except WaError:
        read_only_now = None
    if journals is not None:
        res.metrics.writes_spooled.set(journals.spooled)
        res.metrics.writes_failed.set(journals.failed)
    if journals is not None and read_only_now is not None:
        refused = refusals(journals.refused, read_only_now)
        for reason in REFUSES_WRITES:
            res.metrics.writes_refused.labels(reason=str(reason)).set(1 if reason in refused else 0)


# --- operations on the cluster (API key only, no user) -----------------------------------------------------

keyed = [Depends(require_api_key)]


class OpsSessionOut(ApiModel):
    session_id: str
    state: str = Field(
        description="Ray's: ALIVE, or PENDING_CREATION / RESTARTING while it waits to be placed"
    )
    node_id: str | None
    pid: int | None
    status: str | None
    uptime_s: float | None
    restarts: int
    rss_bytes: int | None


class OpsNodeOut(ApiModel):
    node_id: str
    address: str
    is_head: bool
    draining: bool
    capacity: int = Field(description="wa_session units it advertises")
    sessions: int


class OpsSessionsOut(ApiModel):
    items: list[OpsSessionOut]
    nodes: list[OpsNodeOut]


class MoveOut(ApiModel):
    session_id: str
    from_node: str
    to_node: str | None
    status: str | None
    spool_left: int
    error: str | None


class OperationOut(ApiModel):
    id: str = Field(description="The persisted operation's id (GET /ops/operations/{id})")
    state: str = Field(description="running, done (a drain stays in force until cancelled), cancelled")
    operation: str
    node_id: str | None
    running: bool = Field(description="The registry is carrying it out")
    done: bool
    planned: int
    left: int = Field(description="drain: sessions still on the node; rebalance: moves not done")
    waiting: list[str] = Field(description="Sessions not moved yet: writes still spooled (database away)")
    moved: list[MoveOut]
    elapsed_s: float


async def _ray(call: Callable[..., T], *args: Any) -> T:
    """A GCS read off the event loop; 503 + Retry-After when Ray cannot answer.

    Never while the driver is not connected or being connected again (`ray_unavailable`): a GCS call
    on a driver whose cluster was replaced can abort the process (Ray 2.60, api/ray_driver.py).
    """
    unavailable = ray_unavailable()
    if unavailable is not None:
        raise unavailable
    try:
        return await asyncio.wait_for(asyncio.to_thread(call, *args), OPS_TIMEOUT_S)
    except WaError:
        raise
    except Exception as err:
        log.warning("ops: the Ray cluster did not answer (%s)", type(err).__name__)
        raise ActorUnreachable("The Ray cluster did not answer", retry_after=RETRY_AFTER_S) from err


def _out(op: Operation) -> OperationOut:
    end = op.finished_at or datetime.now(UTC)
    return OperationOut(
        id=op.id,
        state=op.state,
        operation=op.kind,
        node_id=op.node_id,
        running=op.running,
        done=op.state == "done",
        planned=op.planned,
        left=op.left,
        waiting=list(op.waiting),
        moved=[MoveOut.model_validate(m) for m in op.moved],
        elapsed_s=round(max(0.0, (end - op.created_at).total_seconds()), 3),
    )


def _not_started(kind: str, node_id: str | None) -> OperationOut:
    """What GET answers for a node (or a cluster) that never had one: nothing planned, nothing done."""
    return OperationOut(
        id="",
        state="none",
        operation=kind,
        node_id=node_id,
        running=False,
        done=False,
        planned=0,
        left=0,
        waiting=[],
        moved=[],
        elapsed_s=0.0,
    )


def _drained(ops: list[Operation]) -> set[str]:
    return {op.node_id for op in ops if op.kind == "drain" and op.node_id}


@router.get("/ops/sessions", response_model=OpsSessionsOut, dependencies=keyed, responses=error_responses())
async def ops_sessions(res: Resources) -> OpsSessionsOut:
    """Every session actor with its node, pid, status, uptime, restarts and memory; every node."""
    namespace = res.settings.ray_namespace
    nodes = await _ray(fleet.nodes)
    try:
        rows = await asyncio.wait_for(fleet.session_rows(namespace), OPS_TIMEOUT_S)
    except Exception as err:
        raise ActorUnreachable("The Ray cluster did not answer", retry_after=RETRY_AFTER_S) from err
    per_node = Counter(r.node_id for r in rows if r.node_id)
    try:
        drained = _drained(await res.db.run(operations.in_force))
    except WaError:
        drained = set()  # the database is away: Ray's own drains only
    return OpsSessionsOut(
        items=[
            OpsSessionOut(
                session_id=r.session_id,
                state=r.state,
                node_id=r.node_id,
                pid=r.pid,
                status=r.status.value if r.status else None,
                uptime_s=None if r.uptime_s is None else round(r.uptime_s, 1),
                restarts=r.restarts,
                rss_bytes=r.rss_bytes,
            )
            for r in rows
        ],
        nodes=[
            OpsNodeOut(
                node_id=n.node_id,
                address=n.address,
                is_head=n.is_head,
                draining=n.draining or n.node_id in drained,
                capacity=n.capacity,
                sessions=per_node.get(n.node_id, 0),
            )
            for n in nodes
            if n.alive
        ],
    )


class OperationNotFound(NotFound):
    code = "operation_not_found"
    default_message = "No such operation"


@router.post(
    "/ops/nodes/{nodeId}/drain",
    status_code=202,
    response_model=OperationOut,
    dependencies=keyed,
    responses=error_responses(404, 409),
)
async def start_drain(
    node_id: NodeId,
    res: Resources,
    force: Annotated[
        bool, Query(description="Drain even if the other nodes cannot hold its sessions")
    ] = False,
) -> OperationOut:
    """Stop placing sessions on the node and have the registry move its sessions elsewhere, staggered;
    poll GET. 409 `no_capacity` (the message says how many sessions are short) unless `force`.

    Idempotent: the node's drain in force is answered with its progress. It outlives any API or registry
    process, and stays in force once the node is empty, until DELETE cancels it.
    """
    node = await _ray(fleet.find_node, node_id)
    if node is None:
        raise drain.NodeNotFound()
    current = await res.db.run(operations.in_force)
    mine = next((op for op in current if op.kind == "drain" and op.node_id == node.node_id), None)
    if mine is not None:
        return _out(mine)
    namespace = res.settings.ray_namespace
    nodes = await _ray(fleet.nodes)
    entries = await _ray(fleet.session_actors, namespace)
    short = drain.shortfall(nodes, entries, node.node_id, _drained(current))
    if short and not force:
        raise drain.NoCapacity(
            f"{short} session(s) would have nowhere to go: the other nodes lack {short} free"
            " wa_session unit(s) (add a node, or drain with ?force=true)",
            short=short,
        )
    planned = sum(1 for e in entries if e.node_id == node.node_id)
    op = await res.db.run(operations.start_drain, node.node_id, forced=force, planned=planned)
    log.info("ops: drain of node %s requested (%d sessions, %d short)", node.node_id[:12], planned, short)
    return _out(op)


async def _node_id(node_id: str, res: Resources) -> str:
    """A node id or unique prefix, of a live node, a gone one, or one a drain names."""
    node = await _ray(lambda: fleet.find_node(node_id, alive=False))
    if node is not None:
        return node.node_id
    wanted = node_id.strip().lower()
    named = {op.node_id for op in await res.db.run(operations.in_force) if op.node_id}
    matches = [n for n in named if n.startswith(wanted)]
    if len(matches) != 1:
        raise drain.NodeNotFound()
    return matches[0]


@router.get(
    "/ops/nodes/{nodeId}/drain",
    response_model=OperationOut,
    dependencies=keyed,
    responses=error_responses(404),
)
async def drain_status(node_id: NodeId, res: Resources) -> OperationOut:
    """The node's latest drain as stored: `left` counts the sessions still on the node as of the
    registry's last step, `done` once it holds none."""
    full = await _node_id(node_id, res)
    op = await res.db.run(operations.latest, "drain", full)
    return _not_started("drain", full) if op is None else _out(op)


@router.delete(
    "/ops/nodes/{nodeId}/drain",
    response_model=OperationOut,
    dependencies=keyed,
    responses=error_responses(404),
)
async def cancel_drain(node_id: NodeId, res: Resources) -> OperationOut:
    """Cancel the node's drain: the registry stops moving sessions off it (after the move in flight)
    and the node takes sessions again. 404 `operation_not_found` when no drain of it is in force."""
    full = await _node_id(node_id, res)
    op = await res.db.run(operations.cancel_drain, full)
    if op is None:
        raise OperationNotFound("No drain of this node is in force")
    log.info("ops: drain of node %s cancelled", full[:12])
    return _out(op)


@router.post(
    "/ops/rebalance",
    status_code=202,
    response_model=OperationOut,
    dependencies=keyed,
    responses=error_responses(),
)
async def start_rebalance(res: Resources) -> OperationOut:
    """Move sessions from the fullest nodes to the emptiest until each holds its capacity share within
    one session, staggered, one reconnect per moved session; poll GET. One at a time cluster-wide: while
    one runs, this answers it."""
    await _ray(lambda: None)
    return _out(await res.db.run(operations.start_rebalance))


@router.get("/ops/rebalance", response_model=OperationOut, dependencies=keyed, responses=error_responses())
async def rebalance_status(res: Resources) -> OperationOut:
    """The latest rebalance as stored (`state` "none" and `planned` 0: none ever ran)."""
    op = await res.db.run(operations.latest, "rebalance")
    return _not_started("rebalance", None) if op is None else _out(op)


@router.get(
    "/ops/operations/{operationId}",
    response_model=OperationOut,
    dependencies=keyed,
    responses=error_responses(404),
)
async def operation_status(
    operation_id: Annotated[str, Path(alias="operationId")], res: Resources
) -> OperationOut:
    """A drain or rebalance by the id its POST answered, whatever process has restarted since."""
    op = await res.db.run(operations.get_operation, operation_id)
    if op is None:
        raise OperationNotFound()
    return _out(op)


class ReplayedOut(ApiModel):
    session_id: str
    replayed: int | None = Field(
        description="Set-aside writes requeued; null when the session did not answer"
    )
    error: str | None


class ReplayOut(ApiModel):
    replayed: int = Field(description="Set-aside writes requeued, over every session that answered")
    items: list[ReplayedOut]


@router.post("/ops/spool/replay", response_model=ReplayOut, dependencies=keyed, responses=error_responses())
async def replay_spools(
    res: Resources, session_id: Annotated[str | None, Query(alias="sessionId")] = None
) -> ReplayOut:
    """Every session (or one) requeues the writes PostgreSQL could not apply, once their cause is fixed.

    Each session applies them on its own node, in order after what it holds, and publishes what it stores
    for the first time; an entry that fails again is set aside again (see `/health` `writes.failed`).
    """
    done = await res.actors.replay_failed(session_id)
    return ReplayOut(
        replayed=sum(r.replayed or 0 for r in done),
        items=[ReplayedOut(session_id=r.session_id, replayed=r.replayed, error=r.error) for r in done],
    )
