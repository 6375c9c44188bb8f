"""Webhook delivery figures for /metrics, read from PostgreSQL (where the dispatchers record them).

Read by the API's background refresher (`api.metrics_refresh`, every METRICS_REFRESH_S) within
`READ_TIMEOUT_S`; a database that does not answer leaves the last figures, never fails the scrape.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Gauge

from api.database import Database
from persistence import webhooks

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 2.0


class WebhookFigures:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Gauge(
            "wab_webhook_deliveries",
            "Webhook deliveries kept (WEBHOOK_RETENTION_DAYS) by state: delivered, failed, pending",
            ["state"],
            registry=registry,
        )
        self.retries = Gauge(
            "wab_webhook_retries",
            "Attempts beyond each delivery's first (of the deliveries kept)",
            registry=registry,
        )
        self.oldest_pending = Gauge(
            "wab_webhook_oldest_pending_seconds",
            "Age of the oldest delivery not yet delivered or failed (0: none)",
            registry=registry,
        )

    async def refresh(self, db: Database) -> None:
        try:
            stats = await asyncio.wait_for(db.run(webhooks.stats), READ_TIMEOUT_S)
        except Exception as err:
            log.info("webhook figures not read (%s); /metrics keeps the last ones", type(err).__name__)
            return
        self.deliveries.labels(state="delivered").set(stats.delivered)
        self.deliveries.labels(state="failed").set(stats.failed)
        self.deliveries.labels(state="pending").set(stats.pending)
        self.retries.set(stats.retries)
        self.oldest_pending.set(stats.oldest_pending_s)
