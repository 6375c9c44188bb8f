"""Prometheus metrics of one API process, in a registry of its own (several apps can share a process).

Requests are labelled by route template (`/sessions/{id}/status`), never by raw path, so that the
number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.webhook_metrics import WebhookFigures

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "wab_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "wab_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions = Gauge(
            "wab_sessions", "Sessions by status, as recorded in the database", ["status"], registry=r
        )
        self.actor_calls = Counter(
            "wab_actor_calls", "Calls to session actors and the registry", ["method", "outcome"], registry=r
        )
        self.ws_clients = Gauge("wab_ws_clients", "Open WebSocket connections", registry=r)
        self.sessions_pending = Gauge(
            "wab_sessions_pending",
            "Sessions whose actor waits for a node with a free wa_session unit (or a restart)",
            registry=r,
        )
        self.sessions_pending_oldest = Gauge(
            "wab_sessions_pending_oldest_seconds",
            "How long the oldest pending session has waited (0: none pending)",
            registry=r,
        )
        self.ws_frames = Counter("wab_ws_frames", "Frames queued to WebSocket clients", ["type"], registry=r)
        self.ws_dropped = Counter(
            "wab_ws_dropped", "WebSocket clients dropped for being too slow", registry=r
        )
        self.events = Counter("wab_events_received", "Events received from Redis", ["type"], registry=r)
        self.event_subscription = Gauge(
            "wab_event_subscription_up", "1 while the Redis event log is being read", registry=r
        )
        self.events_skipped = Counter(
            "wab_events_skipped",
            "Event log entries not delivered live (malformed, or owner not resolved in time)",
            ["why"],
            registry=r,
        )
        self.writes_spooled = Gauge(
            "wab_writes_spooled",
            "Writes sessions received and hold on their disk, not yet in PostgreSQL (last registry pass)",
            registry=r,
        )
        self.writes_failed = Gauge(
            "wab_writes_failed",
            "Writes PostgreSQL could not apply (a bug, bad data), kept aside in the sessions' .failed files"
            " until `whatsapp-bridge spool replay` (last registry pass)",
            registry=r,
        )
        self.writes_refused = Gauge(
            "wab_database_writes_refused",
            "1 while PostgreSQL answers but refuses writes (read-only, full), by reason",
            ["reason"],
            registry=r,
        )
        self.refreshed = Gauge(
            "wab_metrics_refreshed_timestamp_seconds",
            "When this process last read the database's figures (sessions by status); a scrape never does",
            registry=r,
        )
        self.ws_resyncs = Counter(
            "wab_ws_resyncs", "WebSocket resumes answered with `resync`", ["reason"], registry=r
        )
        self.ws_resumes = Counter("wab_ws_resumes", "WebSocket resumes replayed from a cursor", registry=r)
        self.ws_resume_entries = Counter(
            "wab_ws_resume_entries", "Event log entries read from Redis to replay resumes", registry=r
        )
        self.ws_resumes_waiting = Gauge(
            "wab_ws_resumes_waiting", "WebSocket resumes waiting for a turn (a reconnect storm)", registry=r
        )
        self.webhooks = WebhookFigures(r)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
    return "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            method = scope.get("method", "")
            method = method if method in _METHODS else "other"
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(time.perf_counter() - started)
