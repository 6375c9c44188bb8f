"""Prometheus metrics (no API key, like /health: scraped from inside the deployment)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from actors.domain import SessionStatus
from actors.errors import WaError
from api.deps import Resources
from persistence import repo

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
)
async def metrics(res: Resources) -> Response:
    """Requests by route and status, latency, sessions by status, events fanned out, WebSocket clients."""
    try:
        counts = await res.db.run(repo.session_status_counts)
    except WaError:
        counts = None  # keep the last values: a scrape must not fail because the database did
    if counts is not None:
        for state in SessionStatus:
            res.metrics.sessions.labels(status=state.value).set(counts.get(state.value, 0))
    return Response(generate_latest(res.metrics.registry), media_type=CONTENT_TYPE_LATEST)
