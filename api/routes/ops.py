"""Prometheus metrics (no API key, like /health: scraped from inside the deployment; METRICS_TOKEN
protects them), and operators' views and controls of the cluster (admin key only)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field

from actors import fleet
from api.deps import Resources, require_admin
from api.errors import error_responses
from api.schemas import ApiModel, ErrorOut
from api.unavailable import RETRY_AFTER_S, ActorUnreachable, ray_unavailable
from kernel.errors import Unauthorized, WaError
from persistence import operations

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
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"},
        401: {"model": ErrorOut, "description": "METRICS_TOKEN is set and the Bearer token is not it"},
    },
)
async def metrics(
    res: Resources, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Response:
    """Requests by route and status, latency, sessions by status and waiting for capacity, events fanned
    out, WebSocket clients. Read from memory (`api.metrics_refresh`): a scrape costs no query. With
    METRICS_TOKEN set, `Authorization: Bearer <METRICS_TOKEN>` is required."""
    expected = res.settings.metrics_token
    if expected is not None:
        scheme, _, presented = (authorization or "").partition(" ")
        wanted = expected.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), wanted):
            raise Unauthorized("Missing or wrong metrics token (Authorization: Bearer <METRICS_TOKEN>)")
    return Response(generate_latest(res.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# --- operations on the cluster (admin key only, no user) --------------------------------------------------

keyed = [Depends(require_admin)]


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


async def ray_call(call: Callable[..., T], *args: Any) -> T:
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


@router.get("/ops/sessions", response_model=OpsSessionsOut, dependencies=keyed, responses=error_responses())
async def ops_sessions(res: Resources) -> OpsSessionsOut:
    """Every session actor with its node, pid, status, uptime, restarts and memory; every node."""
    namespace = res.settings.ray_namespace
    nodes = await ray_call(fleet.nodes)
    try:
        rows = await asyncio.wait_for(fleet.session_rows(namespace), OPS_TIMEOUT_S)
    except Exception as err:
        raise ActorUnreachable("The Ray cluster did not answer", retry_after=RETRY_AFTER_S) from err
    per_node = Counter(r.node_id for r in rows if r.node_id)
    try:
        drained = operations.drained(await res.db.run(operations.in_force))
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
