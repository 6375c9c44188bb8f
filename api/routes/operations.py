"""Drains and rebalances (API key only): the routes create and read `fleet_operation` rows; the registry
carries them out (`actors.operations`), so each answers its state after any process restart."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import Field

from actors import drain, fleet
from api.deps import Resources
from api.errors import error_responses
from api.routes.ops import NodeId, keyed, ray_call
from api.schemas import ApiModel
from kernel.errors import NotFound
from kernel.stored import Operation
from persistence import operations

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])


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
    node = await ray_call(fleet.find_node, node_id)
    if node is None:
        raise drain.NodeNotFound()
    current = await res.db.run(operations.in_force)
    mine = next((op for op in current if op.kind == "drain" and op.node_id == node.node_id), None)
    if mine is not None:
        return _out(mine)
    namespace = res.settings.ray_namespace
    nodes = await ray_call(fleet.nodes)
    entries = await ray_call(fleet.session_actors, namespace)
    short = drain.shortfall(nodes, entries, node.node_id, operations.drained(current))
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
    node = await ray_call(lambda: fleet.find_node(node_id, alive=False))
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
    await ray_call(lambda: None)
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
